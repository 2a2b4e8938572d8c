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
        (f"ops:{SECRET}=write", "must be some of admin, commands, metrics, queries"),
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


def test_the_cache_and_its_options_are_read_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "TWOFOLD_CACHE": "redis://127.0.0.1:6379/0",
            "TWOFOLD_CACHE_TTL": "30",
            "TWOFOLD_CACHE_NOT_FOUND_TTL": "0.5",
            "TWOFOLD_CACHE_LOCAL": "1000",
        }
    )
    assert settings.cache == "redis://127.0.0.1:6379/0"
    assert (settings.cache_ttl, settings.cache_not_found_ttl, settings.cache_local) == (
        30.0,
        0.5,
        1000,
    )
    assert Settings.from_env({}).cache is None
    assert Settings.from_env({}).cache_ttl is None


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("TWOFOLD_CACHE_TTL", "soon", "TWOFOLD_CACHE_TTL must be a number of seconds"),
        ("TWOFOLD_CACHE_TTL", "0", "at least 0.001"),
        ("TWOFOLD_CACHE_NOT_FOUND_TTL", "inf", "TWOFOLD_CACHE_NOT_FOUND_TTL must be"),
        ("TWOFOLD_CACHE_LOCAL", "-1", "TWOFOLD_CACHE_LOCAL must be a whole number"),
        ("TWOFOLD_CACHE_LOCAL", "1.5", "0 or more"),
    ],
)
def test_malformed_cache_options_are_refused_naming_the_variable(
    variable: str, value: str, expected: str
) -> None:
    with pytest.raises(ConfigurationError, match=expected) as refused:
        Settings.from_env({"TWOFOLD_CACHE": "redis://x", variable: value})
    assert repr(value) in str(refused.value)
