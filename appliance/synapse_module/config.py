# SPDX-License-Identifier: AGPL-3.0-or-later
"""The module's configuration block, validated when Synapse starts (errors name the key)."""

from __future__ import annotations

from dataclasses import dataclass

from synapse.module_api.errors import ConfigError

from appliance.addresses.domain_allowlist import InvalidDomainEntry, normalise_domain_entry
from appliance.synapse_module.accounts.validity_config import ValidityConfig, parse_validity
from appliance.synapse_module.federation.peers import FederationConfig, parse_federation
from appliance.synapse_module.rooms.kinds import KIND_SETTING_NAMES

_KNOWN_KEYS = {
    "allowed_domains",
    "clamd",
    "externals",
    "agents_password_login",
    "federation",
    "room_lifetimes_days",
    "account_validity",
    "notifications_enabled_for_new_users",
}
DAY_MS = 86_400_000
_CLAMD_KEYS = {"host", "port", "timeout_seconds", "database_dir"}


@dataclass(frozen=True)
class ClamdConfig:
    host: str = "127.0.0.1"
    port: int = 3310
    timeout_seconds: float = 30.0
    # clamd's DatabaseDirectory: its files' content is part of the signature version, so
    # custom signatures (which clamd's VERSION does not report) also invalidate verdicts.
    database_dir: str | None = None


@dataclass(frozen=True)
class InvitationLimits:
    """How many email invitations (each one a mail from the server) may go out. The defaults
    are those of appliance.yaml's `externals` section, which the rendered config always sets."""

    # Element's invite dialog sends one request per address, in quick succession: a team of
    # partners invited at once must fit in the burst.
    per_inviter_per_minute: int = 20
    per_inviter_per_day: int = 50
    # Across every inviter and room: one person is not mailed without end by many agents.
    per_address_per_day: int = 5


@dataclass(frozen=True)
class ModuleConfig:
    # Seed of the allowlist: copied into the module's table on first start.
    allowed_domains: tuple[str, ...]
    clamd: ClamdConfig
    invitation_limits: InvitationLimits = InvitationLimits()
    # False (auth.password_login: false, with single sign-on): only externals sign in with a
    # password (accounts/password_login.py).
    agents_password_login: bool = True
    # No federation unless the rendered config says otherwise.
    federation: FederationConfig = FederationConfig()
    # The m.room.retention max_lifetime (ms) each kind of room is created with (keys of
    # rooms.kinds.KIND_SETTING_NAMES); a kind left out gets none (Synapse's default policy applies).
    room_lifetimes_ms: tuple[tuple[str, int], ...] = ()
    # None: accounts never expire (accounts/validity.py).
    account_validity: ValidityConfig | None = None
    # notifications.enabled_for_new_users: every new account with an address gets Synapse's
    # email pusher, whatever made it (accounts/new_account_mail.py).
    notifications_enabled_for_new_users: bool = False


def _refuse_unknown(block: dict, known: set[str], where: str) -> None:
    unknown = sorted(set(block) - known)
    if unknown:
        raise ConfigError(
            f"unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})",
            path=(where, unknown[0]) if where else (unknown[0],),
        )


def _parse_domains(raw: object) -> tuple[str, ...]:
    if not isinstance(raw, list):
        raise ConfigError("must be a list of domains", path=("allowed_domains",))
    domains = []
    for index, entry in enumerate(raw):
        try:
            domains.append(normalise_domain_entry(str(entry)))
        except InvalidDomainEntry as error:
            raise ConfigError(str(error), path=("allowed_domains", str(index))) from None
    return tuple(dict.fromkeys(domains))


def _parse_clamd(raw: object) -> ClamdConfig:
    if raw is None:
        return ClamdConfig()
    if not isinstance(raw, dict):
        raise ConfigError("must be a mapping", path=("clamd",))
    _refuse_unknown(raw, _CLAMD_KEYS, "clamd")
    port = raw.get("port", ClamdConfig.port)
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError("must be a port number (1-65535)", path=("clamd", "port"))
    timeout = raw.get("timeout_seconds", ClamdConfig.timeout_seconds)
    if not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ConfigError("must be a positive number", path=("clamd", "timeout_seconds"))
    host = raw.get("host", ClamdConfig.host)
    if not isinstance(host, str) or not host:
        raise ConfigError("must be a host name or address", path=("clamd", "host"))
    database_dir = raw.get("database_dir")
    if database_dir is not None and (not isinstance(database_dir, str) or not database_dir):
        raise ConfigError("must be a directory path", path=("clamd", "database_dir"))
    return ClamdConfig(
        host=host, port=port, timeout_seconds=float(timeout), database_dir=database_dir
    )


_EXTERNALS_KEYS = {
    "invitations_per_inviter_per_minute": "per_inviter_per_minute",
    "invitations_per_inviter_per_day": "per_inviter_per_day",
    "invitations_per_address_per_day": "per_address_per_day",
}


def _parse_externals(raw: object) -> InvitationLimits:
    if raw is None:
        return InvitationLimits()
    if not isinstance(raw, dict):
        raise ConfigError("must be a mapping", path=("externals",))
    _refuse_unknown(raw, set(_EXTERNALS_KEYS), "externals")
    limits = {}
    for key, field in _EXTERNALS_KEYS.items():
        value = raw.get(key, getattr(InvitationLimits, field))
        # bool is an int in Python: `true` must not become a limit of 1.
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError("must be a whole number of at least 1", path=("externals", key))
        limits[field] = value
    return InvitationLimits(**limits)


def parse_module_config(raw: object) -> ModuleConfig:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("the module's config must be a mapping")
    _refuse_unknown(raw, _KNOWN_KEYS, "")
    return ModuleConfig(
        allowed_domains=_parse_domains(raw.get("allowed_domains", [])),
        clamd=_parse_clamd(raw.get("clamd")),
        invitation_limits=_parse_externals(raw.get("externals")),
        agents_password_login=_parse_bool(raw, "agents_password_login", True),
        federation=parse_federation(raw.get("federation")),
        room_lifetimes_ms=_parse_room_lifetimes(raw.get("room_lifetimes_days")),
        account_validity=parse_validity(raw.get("account_validity")),
        notifications_enabled_for_new_users=_parse_bool(
            raw, "notifications_enabled_for_new_users", False
        ),
    )


def _parse_room_lifetimes(raw: object) -> tuple[tuple[str, int], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise ConfigError("must be a mapping of room kinds to days", path=("room_lifetimes_days",))
    _refuse_unknown(raw, set(KIND_SETTING_NAMES), "room_lifetimes_days")
    lifetimes = []
    for kind, days in raw.items():
        if isinstance(days, bool) or not isinstance(days, int) or days < 1:
            raise ConfigError(
                "must be a whole number of days, 1 or more", path=("room_lifetimes_days", kind)
            )
        lifetimes.append((kind, days * DAY_MS))
    return tuple(lifetimes)


def _parse_bool(raw: dict, key: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError("must be true or false", path=(key,))
    return value
