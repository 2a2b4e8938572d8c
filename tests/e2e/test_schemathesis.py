"""Fuzz the shop's HTTP API from its own OpenAPI document: no 5xx, every response (status,
content type, headers, body) conforms to the schema the server publishes, every request
the schema forbids is refused, and every request it allows is accepted (positive mode):
the document declares each limit the server enforces, so a client generated from it never
sends a request that gets 422 for its form.

The schema is built at collection time from the same function that serves /openapi.json
(schemathesis parametrizes tests when they are collected, before any server runs); the
first test proves the served document is that one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error, positive_data_acceptance

from tests.e2e.conftest import running, shop_settings
from tests.e2e.shop_client import shop
from twofold.examples.shop.http import api
from twofold.http.accept import IF_MATCH_PATTERN
from twofold.http.openapi import openapi_document

DOCUMENT = openapi_document(api, auth=False)
schema = schemathesis.openapi.from_dict(DOCUMENT)


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = shop_settings(tmp_path_factory.mktemp("schemathesis"))
    with running(api.asgi(settings)) as url:
        with httpx.Client(base_url=url) as client:
            shop(client)  # some data, so not every generated id is unknown
        yield url


def test_the_served_document_is_the_one_fuzzed(base_url: str) -> None:
    assert httpx.get(f"{base_url}/openapi.json").json() == DOCUMENT


WAIT_MS = 50  # cap on timeout_ms, so the cases that wait for a far position end quickly


@schemathesis.check
def no_server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    """not_a_server_error, except the contract's 503: the view has not reached the position
    asked for in time (problem type view-behind, with Retry-After)."""
    if response.status_code < 500:
        return None
    body = response.json() if response.status_code == 503 else {}
    if body.get("type", "").endswith(":view-behind") and "retry-after" in {
        name.lower() for name in response.headers
    }:
        return None
    raise AssertionError(f"server error {response.status_code}: {response.text[:500]}")


# What no schema can state: whether the ids a command names exist, whether an Idempotency-Key
# was used before with another request, which version a resource is at now, and how far the
# log reaches (a min_position beyond its head does not exist yet).
_STATEFUL = re.compile(
    r"no (user|product) '.*' exists; (create|add) it first|position [0-9]+ does not exist yet.*",
    re.DOTALL,
)


def _refused_for_the_state_of_the_store(response: Any) -> bool:
    if response.status_code == 412:  # If-Match named another version than the current one
        return True
    if response.status_code != 422:
        return False
    errors = response.json().get("errors") or []
    return bool(errors) and all(
        _STATEFUL.fullmatch(error["message"])
        or (error["field"] == "Idempotency-Key" and "used before" in error["message"])
        for error in errors
    )


@schemathesis.check
def valid_requests_are_accepted(ctx: Any, response: Any, case: Any) -> bool | None:
    """positive_data_acceptance, except refusals that depend on what the store holds: an
    order for a customer that does not exist is valid in form, and refused by contract."""
    if _refused_for_the_state_of_the_store(response):
        return None
    return positive_data_acceptance(ctx, response, case)  # type: ignore[no-any-return]


IF_MATCH = re.compile(IF_MATCH_PATTERN)


def send_what_the_schema_declares(case: Any) -> None:
    """schemathesis 4.32's coverage phase sends ``If-Match: 0`` as a positive case, though the
    pattern the document declares demands a quoted tag (it draws no header holding a quote):
    send a tag that the declared pattern admits instead, so positive means schema-valid."""
    headers = case.headers or {}
    value = headers.get("If-Match")
    if value is not None and case.meta.generation.mode.is_positive and not IF_MATCH.match(value):
        case.headers = {**headers, "If-Match": '"1"'}


def bound_the_wait(case: Any) -> None:
    query = case.query or {}
    if "min_position" in query or "Twofold-Min-Position" in (case.headers or {}):
        timeout = query.get("timeout_ms")
        if timeout is None or (isinstance(timeout, int) and timeout > WAIT_MS):
            case.query = {**query, "timeout_ms": WAIT_MS}


@pytest.mark.slow
@schema.parametrize()
def test_the_api_honours_its_schema(case: Any, base_url: str) -> None:
    bound_the_wait(case)
    send_what_the_schema_declares(case)
    # positive_data_acceptance and not_a_server_error are replaced by the checks above, which
    # allow only what the store's state decides (see there). Every other check runs: status
    # codes, content types, headers, response bodies, rejection of schema-invalid requests.
    case.call_and_validate(
        base_url=base_url,
        excluded_checks=[positive_data_acceptance, not_a_server_error],
        additional_checks=[no_server_error, valid_requests_are_accepted],
    )
