"""The web page: one HTML shell, served at /, /jobs/<id>, /compare?a=<job id>&b=<job id> (two jobs side by
side) and /atlas/<model>/<layer>/<unit> (each level of the atlas too), so every job, every comparison and
every view of the atlas has its own URL.

The page's script talks to the same /v1 API as any other client; there is no build step and
nothing is fetched from outside (many deployments have no internet). A unit's page alone carries its
Open Graph tags in the HTML itself: link previews in chats read the HTML and run no script.
"""

from flask import Blueprint, Response, current_app, request
from markupsafe import escape

from api.contract import documented, error, html
from shared.layers import is_unit

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
def page(model: str = "", layer: str = "", unit: int | None = None, **_: str):
    """The page; its script opens the view the path names: a job, two jobs compared, or the atlas's model,
    layer or unit."""
    tags = unit_preview_tags(model, layer, unit) if unit is not None else ""
    if tags:
        with current_app.open_resource("static/index.html", "r", encoding="utf-8") as file:
            shell = file.read()
        response = Response(shell.replace("</head>", f"{tags}</head>", 1), mimetype="text/html")
    else:
        response = current_app.send_static_file("index.html")
    response.headers["Cache-Control"] = "no-cache"
    return response


def unit_preview_tags(model: str, layer: str, unit: int) -> str:
    """Open Graph tags for a unit's page: its title and its picture (GET /v1/units/...), rendered on
    demand when a preview first asks for it. Nothing for a path that names no unit."""
    if not is_unit(model, layer, unit):
        return ""
    title = f"{model} · {layer} · unit {unit}"
    properties = {
        "og:type": "website",
        "og:site_name": "filterviz",
        "og:title": title,
        "og:description": f"What unit {unit} of {layer} in {model} responds to most, painted by gradient ascent.",
        "og:url": request.base_url,
        "og:image": f"{request.host_url}v1/units/{model}/{layer}/{unit}.png",
        "og:image:alt": f"The picture unit {unit} of {layer} responds to most",
    }
    tags = [f'<meta property="{name}" content="{escape(value)}">' for name, value in properties.items()]
    return "".join(f"  {tag}\n" for tag in [*tags, '<meta name="twitter:card" content="summary">'])
