"""Who may operate the service: the ``admin`` scope, or, without keys, this machine only.

With ``TWOFOLD_API_KEYS`` configured, every admin request needs a key with the ``admin``
scope (``Authorization: Bearer <key>`` or ``X-API-Key``): 401 without one, 403 when the key
lacks the scope. Without keys, the admin API answers loopback clients only (127.0.0.0/8,
::1): any other client gets 403. A request that names a forwarding proxy (``Forwarded``,
``X-Forwarded-For``, ``X-Real-IP``) is refused too when no keys are set, since its
loopback address is the proxy's, not the caller's: behind a proxy, configure keys.
Without keys the ``Host`` header must name this machine too (``localhost``, a loopback
address): a web page whose own name an attacker points at 127.0.0.1 (DNS rebinding) is then
refused; and a request a browser marks as sent by another site (``Origin`` naming another
origin, ``Sec-Fetch-Site: cross-site``) is refused, so that a web page the operator visits
cannot use the operator's loopback access (cross-site request forgery).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from twofold.http.auth import ApiKeys, Principal
from twofold.http.problems import ProblemError, problem

__all__ = ["ADMIN_SCOPE", "admin_guard", "is_loopback_client"]

ADMIN_SCOPE = "admin"
_FORWARDED = frozenset({b"forwarded", b"x-forwarded-for", b"x-real-ip"})


def is_loopback_client(client: tuple[str, int] | None) -> bool:
    """Whether the ASGI ``client`` is this machine (a Unix socket has no address: it is)."""
    if client is None:
        return True
    host = client[0]
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def admin_guard(
    keys: ApiKeys,
    headers: Iterable[tuple[bytes, bytes]],
    client: tuple[str, int] | None,
    *,
    page: bool = False,
) -> Principal | None:
    """The admin caller, or a 400/401/403 problem; None when no keys are set (loopback).

    ``page``: the dashboard's page itself, which holds no data and which a browser fetches
    without headers of its own: with keys it is served to anyone (the page asks for a key
    before it shows anything); without keys, to loopback clients only, as the API.
    """
    found = {name.lower(): value for name, value in headers}
    if keys:
        if page:
            return None
        return keys.check(found.get(b"authorization"), found.get(b"x-api-key"), ADMIN_SCOPE)
    if not is_loopback_client(client):
        address = client[0] if client is not None else "?"
        raise ProblemError(
            problem(
                403,
                "admin-loopback-only",
                "Admin is loopback-only",
                f"without API keys the admin API and dashboard answer this machine only, and "
                f"{address} is not it; open them through an SSH tunnel (ssh -L "
                "8000:127.0.0.1:8000 host), or set TWOFOLD_API_KEYS with a key of scope "
                "'admin' (name:secret=admin)",
            )
        )
    host = _host_name(found.get(b"host", b""))
    if host != "localhost" and not is_loopback_client((host, 0)):
        raise ProblemError(
            problem(
                403,
                "admin-loopback-only",
                "Admin is loopback-only",
                f"without API keys the admin API answers requests addressed to this machine "
                f"only (Host: localhost or a loopback address), not to {host or 'no host'!r}; "
                "open http://127.0.0.1:PORT/admin, or set TWOFOLD_API_KEYS with a key of "
                "scope 'admin' (name:secret=admin)",
            )
        )
    origin = found.get(b"origin")
    fetched_from = found.get(b"sec-fetch-site", b"same-origin")
    if (origin is not None and _origin_host(origin) != found.get(b"host", b"").lower()) or (
        fetched_from in (b"cross-site", b"same-site")
    ):
        raise ProblemError(
            problem(
                403,
                "admin-cross-site",
                "Admin refuses other sites",
                "this request was sent by a page of another site (Origin "
                f"{origin.decode('latin-1') if origin else '?'}); without API keys the admin "
                "API answers its own dashboard and clients that are not browsers only",
            )
        )
    if _FORWARDED & found.keys():
        raise ProblemError(
            problem(
                403,
                "admin-loopback-only",
                "Admin is loopback-only",
                "without API keys the admin API answers this machine only, and this request "
                "came through a proxy (it carries Forwarded or X-Forwarded-For), so its "
                "caller is unknown; set TWOFOLD_API_KEYS with a key of scope 'admin' "
                "(name:secret=admin) to operate through a proxy",
            )
        )
    return None


def _host_name(value: bytes) -> str:
    """The name in a Host header, without its port (``[::1]:8000`` -> ``::1``)."""
    text = value.decode("latin-1").strip().lower()
    if text.startswith("["):
        return text[1 : text.find("]")] if "]" in text else text
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


def _origin_host(origin: bytes) -> bytes:
    """``http://127.0.0.1:8000`` -> ``127.0.0.1:8000`` (``null`` stays as it is)."""
    scheme, sep, rest = origin.strip().lower().partition(b"://")
    return rest if sep and scheme in (b"http", b"https") else origin
