# SPDX-License-Identifier: AGPL-3.0-or-later
"""The module's ``account_validity`` block (rendered from appliance.yaml's
``accounts.validity``), validated when Synapse starts; errors name the key.

Durations arrive in seconds: appliance.yaml's "365d" is parsed and checked by the settings
model, so that the operator sees ``accounts.validity.period`` in the error, and the module only
re-checks what it is given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from synapse.module_api.errors import ConfigError

_KEYS = {
    "period_seconds",
    "reminders_seconds",
    "deactivate_after_seconds",
    "exempt",
    "check_seconds",
}
_WHERE = "account_validity"


@dataclass(frozen=True)
class ValidityConfig:
    # How long an account stays valid after registration or renewal.
    period_seconds: int
    # How long before expiry each renewal mail goes out, longest first.
    reminders_seconds: tuple[int, ...] = ()
    # Deactivation this long after expiry; None: expired accounts are never deactivated.
    deactivate_after_seconds: int | None = None
    # User IDs matching any of these (whole match) never expire.
    exempt: tuple[re.Pattern[str], ...] = ()
    # How often the process that runs background tasks looks for mails and deactivations due.
    check_seconds: int = 1800


def _whole(raw: dict, key: str, minimum: int) -> int:
    value = raw.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"must be a whole number of seconds, at least {minimum}", (_WHERE, key))
    return value


def parse_validity(raw: object) -> ValidityConfig | None:
    """None (no block, or null): accounts never expire."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError("must be a mapping", (_WHERE,))
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ConfigError(f"unknown key (known: {', '.join(sorted(_KEYS))})", (_WHERE, unknown[0]))
    period = _whole(raw, "period_seconds", 1)
    reminders = raw.get("reminders_seconds", [])
    if not isinstance(reminders, list):
        raise ConfigError("must be a list of seconds", (_WHERE, "reminders_seconds"))
    for index, value in enumerate(reminders):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < period:
            raise ConfigError(
                "must be a whole number of seconds, above 0 and below the period",
                (_WHERE, "reminders_seconds", str(index)),
            )
    deactivate = None
    if raw.get("deactivate_after_seconds") is not None:
        deactivate = _whole(raw, "deactivate_after_seconds", 0)
    patterns = raw.get("exempt", [])
    if not isinstance(patterns, list):
        raise ConfigError("must be a list of regular expressions", (_WHERE, "exempt"))
    exempt = []
    for index, pattern in enumerate(patterns):
        try:
            exempt.append(re.compile(str(pattern)))
        except re.error as error:
            raise ConfigError(
                f"not a regular expression: {error}", (_WHERE, "exempt", str(index))
            ) from None
    return ValidityConfig(
        period_seconds=period,
        reminders_seconds=tuple(sorted(set(reminders), reverse=True)),
        deactivate_after_seconds=deactivate,
        exempt=tuple(exempt),
        check_seconds=_whole(raw, "check_seconds", 1) if "check_seconds" in raw else 1800,
    )
