"""``/docs``: Swagger UI over ``/openapi.json``, served entirely by this server.

The page and its assets come from the installed package ``swagger-ui-bundle-v2`` (Swagger UI
5, Apache-2.0): no request leaves the server, so the docs work air-gapped and behind proxies.
Only the files the page uses are served, each with a long cache lifetime (their names change
with the package, never their content under one version).
"""

from __future__ import annotations

import functools
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

__all__ = ["ASSETS", "docs_asset", "docs_page"]

ASSETS = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
}

_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title} - API docs</title>
  <link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png">
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
  <div id="docs"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script>
    SwaggerUIBundle({{url: "/openapi.json", dom_id: "#docs", deepLinking: true}});
  </script>
</body>
</html>
"""


def docs_page(title: str) -> HTMLResponse:
    shown = title.replace("&", "&amp;").replace("<", "&lt;")
    return HTMLResponse(_PAGE.format(title=shown))


@functools.cache
def _asset(name: str) -> bytes:
    import swagger_ui_bundle  # type: ignore[import-untyped]

    return (Path(swagger_ui_bundle.swagger_ui_path) / name).read_bytes()


async def docs_asset(request: Request) -> Response:
    name = request.path_params["name"]
    media_type = ASSETS.get(name)
    if media_type is None:
        return Response(status_code=404)
    headers = {"cache-control": "public, max-age=86400"}
    return Response(_asset(name), media_type=media_type, headers=headers)
