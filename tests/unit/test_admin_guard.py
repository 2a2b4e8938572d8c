"""Who may use /admin: the admin scope with keys; without keys, this machine only."""

from __future__ import annotations

import pytest

from twofold.http.admin.guard import admin_guard, is_loopback_client
from twofold.http.auth import ApiKeys
from twofold.http.problems import ProblemError
from twofold.settings import ApiKey

NO_KEYS = ApiKeys([])
KEYS = ApiKeys(
    [
        ApiKey(name="ops", secret="admin-secret-0123456789", scopes=frozenset({"admin"})),
        ApiKey(
            name="app", secret="app-secret-0123456789", scopes=frozenset({"commands", "queries"})
        ),
    ]
)
LOCAL = ("127.0.0.1", 50000)
HOST = [(b"host", b"127.0.0.1:8000")]


def refused(status: int, *args: object, **kwargs: object) -> str:
    with pytest.raises(ProblemError) as caught:
        admin_guard(*args, **kwargs)  # type: ignore[arg-type]
    assert caught.value.problem.status == status
    return caught.value.problem.detail


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.9.1", True), ("::1", True), ("10.1.2.3", False),
     ("192.168.0.7", False), ("2001:db8::1", False), ("localhost", False)],
)  # fmt: skip
def test_only_loopback_addresses_are_loopback_clients(host: str, loopback: bool) -> None:
    assert is_loopback_client((host, 1)) is loopback


def test_without_keys_a_loopback_client_is_let_in() -> None:
    assert admin_guard(NO_KEYS, HOST, LOCAL) is None
    assert admin_guard(NO_KEYS, [(b"host", b"localhost:8000")], LOCAL) is None
    assert admin_guard(NO_KEYS, [(b"host", b"[::1]:8000")], ("::1", 1)) is None


def test_without_keys_another_machine_is_refused_with_what_to_do() -> None:
    detail = refused(403, NO_KEYS, HOST, ("10.0.0.5", 4000))
    assert "10.0.0.5" in detail and "ssh -L" in detail and "TWOFOLD_API_KEYS" in detail


def test_without_keys_a_request_through_a_proxy_is_refused() -> None:
    headers = [*HOST, (b"x-forwarded-for", b"203.0.113.9")]
    assert "proxy" in refused(403, NO_KEYS, headers, LOCAL)
    assert "proxy" in refused(403, NO_KEYS, [*HOST, (b"forwarded", b"for=1.2.3.4")], LOCAL)


def test_without_keys_a_host_that_is_not_this_machine_is_refused() -> None:
    # A page of evil.example whose name resolves to 127.0.0.1 (DNS rebinding).
    detail = refused(403, NO_KEYS, [(b"host", b"evil.example:8000")], LOCAL)
    assert "evil.example" in detail


def test_without_keys_a_request_from_another_site_is_refused() -> None:
    other = [*HOST, (b"origin", b"https://evil.example")]
    assert "another site" in refused(403, NO_KEYS, other, LOCAL)
    fetched = [*HOST, (b"sec-fetch-site", b"cross-site")]
    assert "another site" in refused(403, NO_KEYS, fetched, LOCAL)
    same = [*HOST, (b"origin", b"http://127.0.0.1:8000"), (b"sec-fetch-site", b"same-origin")]
    assert admin_guard(NO_KEYS, same, LOCAL) is None


def test_with_keys_the_admin_scope_is_needed() -> None:
    assert "needs a key" in refused(401, KEYS, HOST, LOCAL)
    assert "not valid" in refused(401, KEYS, [*HOST, (b"x-api-key", b"wrong")], LOCAL)
    lacking = [*HOST, (b"authorization", b"Bearer app-secret-0123456789")]
    assert "'admin' scope" in refused(403, KEYS, lacking, LOCAL)
    admin = [(b"authorization", b"Bearer admin-secret-0123456789")]
    principal = admin_guard(KEYS, admin, ("198.51.100.4", 1))
    assert principal is not None and principal.name == "ops"


def test_the_dashboard_page_needs_no_key_but_stays_local_without_keys() -> None:
    assert admin_guard(KEYS, [], ("198.51.100.4", 1), page=True) is None
    refused(403, NO_KEYS, HOST, ("198.51.100.4", 1), page=True)
