"""The web page: one HTML shell, served at / and at /jobs/<id> so every job has its own URL.

The page's script talks to the same /v1 API as any other client; there is no build step and
nothing is fetched from outside (many deployments have no internet).
"""

from flask import Blueprint, current_app

web = Blueprint("web", __name__)


@web.get("/")
@web.get("/jobs/<job_id>")
def page(job_id: str | None = None):
    """The page; its script opens the job named in the path, if any."""
    response = current_app.send_static_file("index.html")
    response.headers["Cache-Control"] = "no-cache"
    return response
