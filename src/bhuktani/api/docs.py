"""The OpenAPI document's pages: `/docs` (Swagger UI) and `/redoc` (ReDoc), served with
their scripts and styles from our own paths (/docs/assets/...), so that they work where
no CDN can be reached. The builds are the ones the `fastapi-offline` package carries (a
dependency installed by pip like any other)."""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

ASSETS_URL = "/docs/assets"
FAVICON_URL = "/static/favicon.svg"
OPENAPI_URL = "/openapi.json"

# The pages run no inline script and load nothing from another host. Swagger UI and ReDoc
# set inline styles (React's style attributes, styled-components' <style>), ReDoc runs its
# search in a worker made from a blob, Swagger UI's "Try it out" calls our API.
DOCS_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline';"
        " img-src 'self' data:; font-src 'self' data:; connect-src 'self';"
        " worker-src 'self' blob:; form-action 'self'; frame-ancestors 'none';"
        " base-uri 'none'"
    ),
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}

# Swagger UI's settings: no validator badge (it would send the document to
# validator.swagger.io), deep links to operations.
SWAGGER_INIT = f"""\
window.ui = SwaggerUIBundle({{
  url: "{OPENAPI_URL}",
  dom_id: "#swagger-ui",
  validatorUrl: null,
  deepLinking: true,
  displayOperationId: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  layout: "BaseLayout",
}});
"""

SWAGGER_PAGE = f"""\
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>bhuktani API - Swagger UI</title>
<link rel="icon" href="{FAVICON_URL}" type="image/svg+xml">
<link rel="stylesheet" href="{ASSETS_URL}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{ASSETS_URL}/swagger-ui-bundle.js"></script>
<script src="{ASSETS_URL}/swagger-init.js"></script>
</body>
</html>
"""

# ReDoc starts itself on a <redoc> element: no script of ours.
REDOC_PAGE = f"""\
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>bhuktani API - ReDoc</title>
<link rel="icon" href="{FAVICON_URL}" type="image/svg+xml">
</head>
<body>
<redoc spec-url="{OPENAPI_URL}"></redoc>
<script src="{ASSETS_URL}/redoc.standalone.js"></script>
</body>
</html>
"""

# The assets are megabytes that change only with the package: a browser keeps them a day
# instead of fetching them at every page.
ASSET_HEADERS = {"cache-control": "public, max-age=86400"}

# Each asset's file in the package, and its type.
PACKAGED = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
}
ASSET_NAMES = (*PACKAGED, "swagger-init.js")


def _packaged(name: str) -> Traversable:
    return files("fastapi_offline").joinpath("static", name)


def _read(name: str, loaded: dict[str, bytes]) -> bytes:
    """An asset's bytes, read once per process: they are megabytes and never change."""
    if name not in loaded:
        if name == "swagger-init.js":
            loaded[name] = SWAGGER_INIT.encode()
        else:
            loaded[name] = _packaged(name).read_bytes()
    return loaded[name]


def routes() -> list[Route]:
    loaded: dict[str, bytes] = {}

    async def swagger(request: Request) -> HTMLResponse:
        return HTMLResponse(SWAGGER_PAGE, headers=DOCS_HEADERS)

    async def redoc(request: Request) -> HTMLResponse:
        return HTMLResponse(REDOC_PAGE, headers=DOCS_HEADERS)

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ASSET_NAMES:
            raise HTTPException(status_code=404)
        media_type = PACKAGED.get(name, "text/javascript; charset=utf-8")
        return Response(_read(name, loaded), media_type=media_type, headers=ASSET_HEADERS)

    return [
        Route("/docs", swagger, methods=["GET"]),
        Route("/redoc", redoc, methods=["GET"]),
        Route(ASSETS_URL + "/{name}", asset, methods=["GET"]),
    ]
