"""Settings from TWOFOLD_* variables: what is accepted, and what is refused with a reason."""

from __future__ import annotations

import pytest

from twofold.errors import ConfigurationError
from twofold.settings import Settings


@pytest.mark.parametrize(
    ("variable", "value"),
    [("TWOFOLD_BUS", "nats://localhost:4222"), ("TWOFOLD_CACHE", "redis://x")],
)
def test_settings_not_implemented_yet_are_refused_not_ignored(variable: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        Settings.from_env({variable: value})
    message = str(refused.value)
    assert variable in message and "not implemented" in message and "unset it" in message
    assert "\n" not in message


def test_both_unimplemented_settings_are_named_in_one_line() -> None:
    with pytest.raises(ConfigurationError, match=r"TWOFOLD_BUS .* and TWOFOLD_CACHE"):
        Settings.from_env({"TWOFOLD_BUS": "nats://x", "TWOFOLD_CACHE": "redis://x"})
