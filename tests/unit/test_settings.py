"""Settings from TWOFOLD_* variables: what is accepted, and what is refused with a reason."""

from __future__ import annotations

import re

import pytest

from twofold.errors import ConfigurationError
from twofold.settings import MIN_SECRET_LENGTH, ApiKey, Settings, parse_api_keys

SECRET = "s" * MIN_SECRET_LENGTH


def test_api_keys_carry_their_names_and_unnamed_ones_are_named_by_place() -> None:
    keys = parse_api_keys(f"ops:{SECRET}1=admin, {SECRET}2=commands+queries ,{SECRET}3=queries")
    assert [(k.name, k.secret, k.scopes) for k in keys] == [
        ("ops", f"{SECRET}1", frozenset({"admin"})),
        ("key-2", f"{SECRET}2", frozenset({"commands", "queries"})),
        ("key-3", f"{SECRET}3", frozenset({"queries"})),
    ]


def test_a_secret_may_hold_equal_signs_as_base64_does() -> None:
    (key,) = parse_api_keys(f"ci:{SECRET}+/==commands")
    assert key.secret == f"{SECRET}+/=" and key.scopes == {"commands"}


@pytest.mark.parametrize("secret", ["Q", "Qz7", "Qz7" * 5])
def test_a_short_secret_is_refused_without_showing_it(secret: str) -> None:
    with pytest.raises(ConfigurationError, match=f"at least {MIN_SECRET_LENGTH}") as refused:
        Settings.from_env({"TWOFOLD_API_KEYS": f"ops:{secret}=admin"})
    assert secret not in str(refused.value)
    assert "entry 1" in str(refused.value)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (f"ops:{SECRET}", "must look like name:secret=commands"),
        (f"ops:{SECRET}=", "must look like name:secret=commands"),
        (f"ops:{SECRET}=write", "must be some of admin, commands, queries"),
        (f"o p:{SECRET}=admin", "1 to 64 letters"),
        (f"ops:{SECRET}\u00e9=admin", "visible ASCII"),
        (f"ops:{SECRET}1=admin,ops:{SECRET}2=queries", "ops is used twice"),
        (f"{SECRET}1=admin,key-1:{SECRET}2=queries", "key-1 is used twice"),
        (f"a:{SECRET}=admin,b:{SECRET}=queries", "the same secret"),
    ],
)
def test_malformed_api_keys_are_refused_with_the_reason(raw: str, reason: str) -> None:
    with pytest.raises(ConfigurationError, match=reason) as refused:
        Settings.from_env({"TWOFOLD_API_KEYS": raw})
    assert SECRET not in str(refused.value)


def test_api_keys_given_in_code_are_checked_too() -> None:
    with pytest.raises(ConfigurationError, match="at least"):
        ApiKey(name="ops", secret="short", scopes=frozenset({"admin"}))
    with pytest.raises(ConfigurationError, match="ApiKey"):
        Settings(api_keys={SECRET: frozenset({"admin"})})  # type: ignore[arg-type]


@pytest.mark.parametrize(("variable", "value"), [("TWOFOLD_CACHE", "redis://x")])
def test_settings_not_implemented_yet_are_refused_not_ignored(variable: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        Settings.from_env({variable: value})
    message = str(refused.value)
    assert variable in message and "not implemented" in message and "unset it" in message
    assert "\n" not in message


def test_the_bus_is_one_url_or_several_separated_by_commas() -> None:
    settings = Settings.from_env(
        {"TWOFOLD_BUS": "nats://a:4222, kafka://b:9092?idempotence=false,", "TWOFOLD_RELAY": "run"}
    )
    assert settings.bus_urls == ("nats://a:4222", "kafka://b:9092?idempotence=false")
    assert settings.relay == "run"
    assert Settings().bus_urls == () and Settings().relay == "off"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"TWOFOLD_BUS": " , "}, "TWOFOLD_BUS ' , ' names no broker"),
        ({"TWOFOLD_RELAY": "yes", "TWOFOLD_BUS": "nats://x"}, "TWOFOLD_RELAY must be 'run'"),
        ({"TWOFOLD_RELAY": "run"}, "TWOFOLD_RELAY=run needs TWOFOLD_BUS"),
    ],
)
def test_a_bus_setting_that_cannot_work_is_refused_with_what_to_do(
    environ: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(expected)):
        Settings.from_env(environ)
