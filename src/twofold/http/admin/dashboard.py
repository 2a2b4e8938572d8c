"""``/admin``: the dashboard, plain HTML, CSS and JavaScript shipped in the package.

The page and its two assets are files of this package (``static/``, package data): nothing
is built at install time and nothing is fetched from outside the server. The page holds no
data: everything it shows comes from ``/admin/api/`` with the key the operator types into
it (kept in the tab's sessionStorage, sent as a header, never put in a URL). Without API
keys the page, like the API, answers loopback clients only.

A Content-Security-Policy allows scripts, styles and requests to this server alone.
"""

from __future__ import annotations

import functools
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response

__all__ = ["ASSETS", "dashboard_asset", "dashboard_bytes", "dashboard_page"]

ASSETS = {
    "admin.css": "text/css; charset=utf-8",
    "admin.js": "text/javascript; charset=utf-8",
}
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


@functools.cache
def dashboard_bytes(name: str) -> bytes:
    """A file of the dashboard, read once from the installed package."""
    return resources.files("twofold.http.admin").joinpath("static", name).read_bytes()


def dashboard_page() -> Response:
    headers = {**SECURITY_HEADERS, "cache-control": "no-store"}
    return Response(
        dashboard_bytes("admin.html"), media_type="text/html; charset=utf-8", headers=headers
    )


def dashboard_asset(request: Request) -> Response:
    name = request.path_params["name"]
    media_type = ASSETS.get(name)
    if media_type is None:
        return Response(status_code=404)
    # The assets change with the installed version: revalidate rather than cache for long.
    headers = {**SECURITY_HEADERS, "cache-control": "no-cache"}
    return Response(dashboard_bytes(name), media_type=media_type, headers=headers)
