"""The web page: one HTML shell, served at /, /jobs/<id>, /compare?a=<job id>&b=<job id> (two jobs side by
side) and /atlas/<model>/<layer>/<unit> (each level of the atlas too), so every job, every comparison and
every view of the atlas has its own URL.

The page's script talks to the same /v1 API as any other client; there is no build step and
nothing is fetched from outside (many deployments have no internet).
"""

from flask import Blueprint, current_app

from api.contract import documented, error, html

web = Blueprint("web", __name__)


@web.get("/")
@web.get("/jobs/<job_id>")
@web.get("/compare")
@web.get("/atlas")
@web.get("/atlas/<model>")
@web.get("/atlas/<model>/<layer>")
@web.get("/atlas/<model>/<layer>/<int:unit>")
@documented("page", "The web page, opened on the view its path names (the page itself says whether it exists)",
            replies={200: html("HTML"), 404: error("No such page")})  # fmt: skip
def page(**_: str | int):
    """The page; its script opens the view the path names: a job, two jobs compared, or the atlas's model,
    layer or unit."""
    response = current_app.send_static_file("index.html")
    response.headers["Cache-Control"] = "no-cache"
    return response
