"""TWOFOLD_CACHE and its options, as bootstrap checks and merges them (nothing is opened)."""

from __future__ import annotations

import pytest

from twofold import Settings
from twofold.application.cache import CacheSettings
from twofold.bootstrap import cache_namespace, cache_settings, check_settings
from twofold.errors import ConfigurationError


def problems(**values: object) -> list[str]:
    try:
        check_settings(Settings(**values))  # type: ignore[arg-type]
    except ConfigurationError as error:
        return str(error).splitlines()
    return []


def test_a_redis_cache_with_its_options_passes_the_check() -> None:
    assert problems(cache="redis://127.0.0.1:6379/0?lists=posts", cache_ttl=30.0) == []
    assert problems(cache="rediss://cache.example:6380/1", cache_local=100) == []


def test_cache_options_without_a_cache_are_refused_one_line_each() -> None:
    lines = problems(cache_ttl=30.0, cache_local=10)
    assert len(lines) == 2
    assert "TWOFOLD_CACHE_TTL needs TWOFOLD_CACHE" in lines[0]
    assert "TWOFOLD_CACHE_LOCAL needs TWOFOLD_CACHE" in lines[1]


def test_a_cache_url_of_another_scheme_is_refused_naming_the_known_ones() -> None:
    (line,) = problems(cache="memcached://127.0.0.1:11211")
    assert "TWOFOLD_CACHE 'memcached://127.0.0.1:11211'" in line
    assert "redis://" in line


def test_an_option_said_twice_and_an_unknown_option_are_each_a_line() -> None:
    lines = problems(
        event_store="ftp://nowhere",
        cache="redis://127.0.0.1:6379/0?ttl=10&colour=blue",
        cache_ttl=30.0,
    )
    assert len(lines) == 3, lines
    assert "TWOFOLD_EVENT_STORE 'ftp://nowhere'" in lines[0]
    assert "TWOFOLD_CACHE sets ttl and TWOFOLD_CACHE_TTL sets it too" in lines[1]
    assert "option 'colour' is not understood" in lines[2]


def test_out_of_range_options_in_the_url_are_refused() -> None:
    (line,) = problems(cache="redis://127.0.0.1:6379/0?local_entries=-5")
    assert "local_entries" in line and "-5" in line


def test_the_settings_override_the_defaults_and_the_namespace_is_the_service_s() -> None:
    url, options = cache_settings(
        Settings(
            cache="redis://127.0.0.1:6379/2?lists=posts",
            cache_ttl=30.0,
            cache_not_found_ttl=0.5,
            cache_local=1000,
        ),
        namespace="shop-0123456789",
    )
    assert url == "redis://127.0.0.1:6379/2"
    assert options == CacheSettings(
        namespace="shop-0123456789",
        ttl=30.0,
        not_found_ttl=0.5,
        local_entries=1000,
        lists=frozenset({"posts"}),
    )


def test_a_namespace_in_the_url_wins_over_the_default() -> None:
    _, options = cache_settings(
        Settings(cache="redis://127.0.0.1:6379/0?namespace=blog"), namespace="shop-1"
    )
    assert options.namespace == "blog"


def test_the_default_namespace_differs_per_read_store_and_is_a_valid_name() -> None:
    here = cache_namespace("my shop", "sqlite:///views.db")
    assert here.startswith("my-shop-")
    assert here == cache_namespace("my shop", "sqlite:///views.db")
    assert here != cache_namespace("my shop", "sqlite:///other.db")
    assert (
        here
        != cache_namespace("my shop", "postgresql://127.0.0.1/test?schema=a")
        != cache_namespace("my shop", "postgresql://127.0.0.1/test?schema=b")
    )
    CacheSettings(namespace=here)  # no ':', braces or spaces


def test_a_cache_in_front_of_an_unknown_read_store_names_both_problems() -> None:
    lines = problems(read_store="mongodb://x", cache="redis://127.0.0.1:6379/0")
    assert len(lines) == 1 and "TWOFOLD_READ_STORE" in lines[0]


@pytest.mark.parametrize("value", ["redis://x", "unix:///run/redis.sock"])
def test_settings_accept_a_cache_url(value: str) -> None:
    assert Settings(cache=value).cache == value
