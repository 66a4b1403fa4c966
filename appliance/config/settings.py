# SPDX-License-Identifier: AGPL-3.0-or-later
"""The settings model: `appliance.yaml`, the one input every config file is rendered from.

Validation happens here, before anything starts: an unknown key or a bad value is refused with
the key's dotted path and the reason (see `SettingsError`).
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from appliance.addresses.domain_allowlist import InvalidDomainEntry, normalise_domain_entry
from appliance.addresses.identity import name_part_problem
from appliance.config.worker_routes import Placement, WorkerPlan, plan_problems, plan_workers

DEFAULT_SETTINGS_FILE = "appliance.yaml"
SETTINGS_ENV = "APPLIANCE_CONFIG"


class SettingsError(Exception):
    """Settings that cannot be used; `problems` holds one "key.path: reason" line each."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))

    def __str__(self) -> str:
        lines = [f"{self.source} is not valid:"]
        lines += [f"  - {problem}" for problem in self.problems]
        return "\n".join(lines)


def _domain_entry(value: str) -> str:
    try:
        return normalise_domain_entry(value)
    except InvalidDomainEntry as error:
        raise ValueError(str(error)) from None


DomainEntry = Annotated[str, AfterValidator(_domain_entry)]


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _ip_address(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None
    return value


def _own_address(value: str) -> str:
    address = ipaddress.ip_address(_ip_address(value))
    # ::ffff:127.0.0.1 is 127.0.0.1, yet on Python 3.11 its properties are the IPv6 ones.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if (
        address.is_loopback
        or address.is_unspecified
        or address.is_multicast
        or address.is_reserved
        # Link-local holds the clouds' metadata services (169.254.169.254), never a host's own.
        or address.is_link_local
    ):
        raise ValueError(f"{value} is not an address of this host on a network")
    if address.is_global:
        raise ValueError(f"{value} is public: Synapse reaches it without being told")
    return str(address)


Port = Annotated[int, Field(ge=1, le=65535)]


class _Section(BaseModel):
    # Unknown keys are refused: a typo must not silently fall back to a default.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Listener(_Section):
    bind_address: str = "127.0.0.1"
    port: Port

    @field_validator("bind_address")
    @classmethod
    def _is_ip(cls, value: str) -> str:
        return _ip_address(value)

    @property
    def is_loopback(self) -> bool:
        return ipaddress.ip_address(self.bind_address).is_loopback

    @property
    def connect_host(self) -> str:
        """The address a client on this host connects to (a wildcard bind means loopback)."""
        if self.bind_address in ("0.0.0.0", "::"):
            return "127.0.0.1"
        return self.bind_address

    @property
    def url(self) -> str:
        host = self.connect_host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"


class SqliteDatabase(_Section):
    engine: Literal["sqlite"] = "sqlite"


class PostgresDatabase(_Section):
    engine: Literal["postgresql"]
    host: str = "/var/run/postgresql"
    port: Port = 5432
    name: str = "synapse"
    user: str = "synapse"
    password: SecretStr | None = None
    # Synapse opens this many connections per process; PostgreSQL's default max is 100.
    pool_max: Annotated[int, Field(ge=1, le=50)] = 10
    # PostgreSQL's max_connections (rendered into its settings on a host the roles provision):
    # pool_max for every Synapse process, plus a reserve, must fit (see synapse.workers).
    max_connections: Annotated[int, Field(ge=20, le=10000)] = 100


class RedisSettings(_Section):
    # Synapse's processes talk to each other through Redis (workers only). Either a unix
    # socket (an absolute path: evaluation, or Redis on the Synapse host) or host and port.
    # The password is no setting: the appliance generates it into a 0600 file that Synapse
    # reads (redis.password_path), so it never sits in appliance.yaml or homeserver.yaml.
    path: Path | None = None
    host: str | None = None
    port: Port = 6379

    @model_validator(mode="before")
    @classmethod
    def _no_inline_password(cls, data: object) -> object:
        if isinstance(data, dict) and "password" in data:
            raise ValueError(
                "password: not set here any more; the appliance generates it into "
                "<state_dir>/secrets/redis_password (mode 0600), which Synapse reads"
            )
        return data

    @model_validator(mode="after")
    def _one_address(self) -> RedisSettings:
        if (self.path is None) == (self.host is None):
            raise ValueError("give either path (a unix socket) or host, not both nor neither")
        if self.path is not None and not self.path.is_absolute():
            raise ValueError(f"path: {self.path} is not an absolute path")
        return self


class WorkerHosts(_Section):
    # Production on several hosts: each kind of process's hosts, by private address (the
    # Ansible groups synapse_main, synapse_workers, synapse_media). The media repository goes
    # to the media hosts, every other worker to the worker hosts, in turn; a kind with no host
    # stays on the main process's host. All empty: one host runs every process.
    main: Annotated[str, AfterValidator(_ip_address)] | None = None
    workers: list[Annotated[str, AfterValidator(_ip_address)]] = Field(default_factory=list)
    media: list[Annotated[str, AfterValidator(_ip_address)]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _main_first(self) -> WorkerHosts:
        if (self.workers or self.media) and self.main is None:
            raise ValueError("main: needed with workers or media (where the main process runs)")
        return self


class WorkerSettings(_Section):
    # none: one Synapse process. small: the main process, one generic worker for sync and
    # client traffic, one media repository. standard: pools of sync and client workers, one
    # for login and registration, a stream writer, media, background tasks (and in production
    # a federation reader, a federation sender and a pusher). Anything but none needs
    # PostgreSQL and synapse.redis.
    preset: Literal["none", "small", "standard"] = "none"
    # standard only: how many sync workers and client workers.
    sync_workers: Annotated[int, Field(ge=1, le=16)] | None = None
    client_workers: Annotated[int, Field(ge=1, le=16)] | None = None
    # Worker i listens on base_port + 2i (HTTP) and base_port + 2i + 1 (replication), on
    # synapse.listen.bind_address; the main process's replication listener on
    # replication_port.
    base_port: Port = 8100
    replication_port: Port = 9093
    # Evaluation only: a local router takes synapse.listen and routes as nginx does in
    # production; the main process's own client listener moves to this port.
    main_port: Port = 8099
    hosts: WorkerHosts = WorkerHosts()


class SynapseSettings(_Section):
    listen: Listener = Listener(port=8008)
    database: SqliteDatabase | PostgresDatabase = Field(
        default_factory=SqliteDatabase, discriminator="engine"
    )
    # Synapse refuses larger uploads; clamd's StreamMaxLength is rendered from the same value,
    # so a file can never be too big to be scanned.
    max_upload_size_mb: Annotated[int, Field(ge=1, le=4000)] = 100
    # Intranet hosts: this host's own private addresses (10.x, 172.16-31.x, 192.168.x, fc00::/7)
    # that public_baseurl's name resolves to. Synapse calls its own identity service there for
    # email invitations, and refuses private addresses it is not told about. They become
    # Synapse's ip_range_whitelist, which federation and push also use: list only this host's
    # own addresses, never loopback (internal services listen there without authentication).
    own_addresses: list[Annotated[str, AfterValidator(_own_address)]] = Field(default_factory=list)
    workers: WorkerSettings = WorkerSettings()
    redis: RedisSettings | None = None

    def worker_plan(self, *, production: bool = False) -> WorkerPlan:
        """Every Synapse process these settings ask for (see appliance.config.worker_routes)."""
        workers = self.workers
        hosts = workers.hosts
        return plan_workers(
            workers.preset,
            base_port=workers.base_port,
            main_replication_port=workers.replication_port,
            sync_workers=workers.sync_workers or 2,
            client_workers=workers.client_workers or 2,
            production=production,
            placement=Placement(hosts.main, tuple(hosts.workers), tuple(hosts.media)),
        )


class ConsoleSettings(_Section):
    listen: Listener = Listener(port=8080)
    # Idle time after which an operator must log in again.
    session_timeout_minutes: Annotated[int, Field(ge=5, le=24 * 60)] = 30
    # The audit log forgets entries older than this (about 13 months by default, so that a
    # yearly review still sees the whole previous year).
    audit_retention_days: Annotated[int, Field(ge=30, le=3650)] = 400
    # true: every operator must set up a second factor (an authenticator app's codes) before
    # using the console; false: operators who set one up are asked for it, others are not.
    require_second_factor: bool = False
    # While a health check stays red, the operators who asked for alerts get a reminder this
    # often (a mail when it turns red and one when it recovers in any case).
    alert_reminder_hours: Annotated[int, Field(ge=1, le=7 * 24)] = 4


class ContentScannerSettings(_Section):
    listen: Listener = Listener(port=8090)


class ClamavSettings(_Section):
    listen: Listener = Listener(port=3310)
    # evaluation: a signature file made from the EICAR test string, and nothing else.
    # freshclam: the real signature databases, kept up to date by freshclam (production).
    signatures: Literal["evaluation", "freshclam"] = "evaluation"
    scan_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 30.0
    # freshclam only: download from this mirror (http(s)://host[:port]) instead of ClamAV's.
    private_mirror: str | None = None
    # freshclam only: also install the EICAR-only evaluation signatures, so clamd can start on
    # a host that cannot reach any mirror yet (real viruses are not detected until freshclam's
    # first download succeeds).
    evaluation_fallback: bool = False
    # Password-protected archives (zip, 7z, rar) and encrypted PDFs cannot be scanned inside:
    # refused by default (clamd's AlertEncryptedArchive/AlertEncryptedDoc); true lets them
    # through unscanned.
    allow_encrypted_archives: bool = False


class TurnSettings(_Section):
    # Voice and video calls: coturn (Debian's TURN server) relays the media of clients that
    # cannot reach each other directly (NATs, proxies). Synapse hands signed-in clients
    # short-lived credentials made with a secret it shares with coturn (turn_shared_secret_path;
    # the secret lives in secrets/, coturn's copy in its 0600 config).
    enabled: bool = False
    # The name clients reach the TURN server at (in the turn: URIs Synapse hands out); null:
    # public_baseurl's host.
    host: str | None = None
    # Where coturn listens, UDP and TCP. Production: a public address of the host (clients come
    # from anywhere); evaluation: loopback.
    listen: Listener = Listener(port=3478)
    # Production: TURN over TLS (turns:, for networks that only let HTTPS-like traffic out) with
    # nginx's certificate; null: none.
    tls_port: Port | None = None
    # The address clients see for relayed media, when the host is behind a NAT (a cloud
    # instance): its public address. null: the listen address.
    external_address: Annotated[str, AfterValidator(_ip_address)] | None = None
    # The UDP ports coturn relays media on (the firewall opens them): each call takes one or
    # two, so the range bounds how many calls can be relayed at once.
    relay_min_port: Port = 49152
    relay_max_port: Port = 59999
    # How long the credentials Synapse hands out stay valid (a call longer than this keeps its
    # allocation: coturn checks them when the allocation is made and refreshed).
    credential_lifetime_minutes: Annotated[int, Field(ge=5, le=1440)] = 60

    @field_validator("listen")
    @classmethod
    def _unprivileged_port(cls, value: Listener) -> Listener:
        if value.port < 1024:
            raise ValueError(f"port {value.port}: coturn runs unprivileged, use 1024 or above")
        return value

    @field_validator("tls_port")
    @classmethod
    def _unprivileged_tls_port(cls, value: int | None) -> int | None:
        if value is not None and value < 1024:
            raise ValueError(f"{value}: coturn runs unprivileged, use 1024 or above")
        return value

    @model_validator(mode="after")
    def _relay_range(self) -> TurnSettings:
        if self.relay_min_port > self.relay_max_port:
            raise ValueError(
                f"relay_min_port: {self.relay_min_port} is above relay_max_port "
                f"{self.relay_max_port}"
            )
        return self


class LocalMtaSettings(_Section):
    # Production: Synapse and the console hand every mail to Debian's postfix, a null client
    # listening on 127.0.0.1:port only, which queues it and relays it to smtp_host:smtp_port
    # (with smtp_user/smtp_password and require_transport_security), retrying for days: a
    # stalled or absent relay never holds a request. false: they talk to the relay directly.
    enabled: bool = False
    port: Port = 25


@dataclass(frozen=True)
class MailDelivery:
    """Where the appliance's own services (Synapse, the console) hand their mail."""

    host: str
    port: int
    user: str | None
    password: SecretStr | None
    require_transport_security: bool
    # STARTTLS when the server offers it (Synapse's enable_tls).
    enable_tls: bool


class MailSettings(_Section):
    # The organisation's SMTP relay (or, in evaluation, the local sink).
    smtp_host: str = "127.0.0.1"
    smtp_port: Port = 2525
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    require_transport_security: bool = False
    notif_from: str = "Messagerie <noreply@appliance.localhost>"
    # evaluation runs a local SMTP sink on smtp_host:smtp_port that stores every message
    # under <state_dir>/mail (Maildir); production relays through a real SMTP server.
    run_local_sink: bool = True
    local_mta: LocalMtaSettings = LocalMtaSettings()

    @property
    def relay_tls_required(self) -> bool:
        """TLS to the relay: when the settings ask, and whenever a password would otherwise
        cross a network in clear (a relay that is not on this host)."""
        if self.require_transport_security:
            return True
        if not self.smtp_user:
            return False
        if self.smtp_host.lower() == "localhost":
            return False
        try:
            return not ipaddress.ip_address(self.smtp_host).is_loopback
        except ValueError:
            return True  # a host name: another host

    @property
    def delivery(self) -> MailDelivery:
        """The local MTA on loopback when there is one (no credentials, no TLS: the mail never
        leaves the host there), else the relay itself."""
        if self.local_mta.enabled:
            return MailDelivery("127.0.0.1", self.local_mta.port, None, None, False, False)
        return MailDelivery(
            self.smtp_host,
            self.smtp_port,
            self.smtp_user,
            self.smtp_password,
            self.require_transport_security,
            not self.run_local_sink,
        )


class RegistrationSettings(_Section):
    # Seed of the allowlist: entries are exact domains (ac-paris.fr) or subdomain wildcards
    # (*.gouv.fr). Once Synapse runs, the list lives in its database and the console edits it.
    allowed_domains: list[DomainEntry] = Field(default_factory=lambda: ["example.org"])
    # Lifetime of the link sent by email to verify an address.
    validation_token_lifetime: str = "1h"


class ExternalsSettings(_Section):
    # Each email invitation is a mail sent in the server's name: how many may go out. Past a
    # limit the invitation is refused (429 M_LIMIT_EXCEEDED, with when to try again).
    # Per agent, in any minute (Element invites a list of addresses in quick succession).
    invitations_per_inviter_per_minute: Annotated[int, Field(ge=1, le=1000)] = 20
    # Per agent, in any 24 hours.
    invitations_per_inviter_per_day: Annotated[int, Field(ge=1, le=10000)] = 50
    # Per invited address, in any 24 hours, whoever invites it into whichever room.
    invitations_per_address_per_day: Annotated[int, Field(ge=1, le=100)] = 5


def _issuer(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value


class OidcClaims(_Section):
    # The claim names of the provider's ID token / userinfo; ProConnect's family name is
    # usual_name, LemonLDAP::NG and Keycloak say family_name.
    email: str = "email"
    given_name: str = "given_name"
    family_name: str = "family_name"


class OidcSettings(_Section):
    # The provider's issuer URL; Synapse reads <issuer>/.well-known/openid-configuration.
    issuer: Annotated[str, AfterValidator(_issuer)]
    client_id: str = Field(min_length=1)
    # A file holding the client secret (kept out of appliance.yaml; Synapse reads it).
    client_secret_file: Path
    scopes: list[str] = Field(default_factory=lambda: ["openid", "email", "profile"])
    claims: OidcClaims = OidcClaims()
    # true: a sign-in whose claims carry no `email_verified: true` is refused. false (the
    # default): an `email_verified` the provider sends must be true, but a provider that sends
    # none (ProConnect vouches for its addresses and sends no such claim) is trusted. Set it
    # with providers that let users type their own address (Entra ID's "nOAuth" case).
    require_email_verified: bool = False
    # The label of the sign-in button clients show.
    button_label: str = Field("Se connecter avec mon compte professionnel", min_length=1)

    @field_validator("client_secret_file")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        if not value.is_absolute():
            raise ValueError("must be an absolute path")
        return value

    @field_validator("scopes")
    @classmethod
    def _openid_scope(cls, value: list[str]) -> list[str]:
        if "openid" not in value:
            raise ValueError("must include 'openid' (OpenID Connect)")
        return value


class AuthSettings(_Section):
    # Single sign-on through the administration's OpenID provider; null: passwords only.
    oidc: OidcSettings | None = None
    # false: agents sign in only through single sign-on (needs oidc); externals, who have no
    # account at the provider, keep their email registration and password, and server
    # administrators (the console's service account) their password.
    password_login: bool = True

    @model_validator(mode="after")
    def _someone_can_sign_in(self) -> AuthSettings:
        if not self.password_login and self.oidc is None:
            raise ValueError(
                "password_login: can be false only when auth.oidc is set (nobody could sign in)"
            )
        return self


# Synapse's durations ("30s", "10m", "1h"); a bare number is milliseconds.
_SYNAPSE_DURATION = re.compile(r"^[0-9]+(ms|s|m|h|d|w|y)?$")


def _synapse_duration(value: str) -> str:
    if not _SYNAPSE_DURATION.match(value):
        raise ValueError(f"{value!r} is not a duration such as 30s, 10m or 1h")
    return value


class NotificationSettings(_Section):
    # Mail about missed messages (Synapse's email notifications, bilingual, never a message's
    # content). Each agent opts in from its client ("email notifications": an email pusher).
    # true: every account made from now on that has an email address gets the mails without
    # asking, whatever made it (email flow, single sign-on, Admin API): Synapse's
    # notif_for_new_users, completed by the module (accounts/new_account_mail.py); existing
    # accounts keep their choice, and so does a person who turns the mails off.
    enabled_for_new_users: bool = False
    # How long a message stays unread, with no client having read it, before the mail goes.
    delay_before_mail: Annotated[str, AfterValidator(_synapse_duration)] = "10m"
    # The web client the mail's links open (Element's URL); null: links to matrix.to.
    client_url: str | None = None

    @field_validator("client_url")
    @classmethod
    def _client_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value


_TERMS_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")


class TermsSettings(_Section):
    # The terms of use every account must accept (Synapse's user consent): an HTML fragment
    # the operator writes (absolute path), shown at registration (the m.login.terms stage) and
    # at /_matrix/consent. null: no terms.
    document: Path
    # The document's version: raise it when the text changes, and every account is asked to
    # accept the new one (a server notice with the link; sending is refused until then).
    version: str

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        # It names a template file and goes into links: letters, digits, ".", "-", "_".
        if not _TERMS_VERSION.match(value):
            raise ValueError(
                f"{value!r} is not a version: 1 to 32 letters, digits, '.', '-' or '_'"
            )
        return value

    # The name clients show for the document.
    name: str = Field("Conditions d'utilisation / Terms of use", min_length=1)

    @field_validator("name")
    @classmethod
    def _no_braces(cls, value: str) -> str:
        # Synapse renders its consent pages with Jinja2: braces would be read as template code.
        if "{" in value or "}" in value:
            raise ValueError("must not contain braces")
        return value

    @field_validator("document")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        if not value.is_absolute():
            raise ValueError("must be an absolute path")
        return value


_DURATION = re.compile(r"^([1-9][0-9]*|0)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _duration(value: str) -> str:
    if not isinstance(value, str) or not _DURATION.match(value):
        raise ValueError(f"{value!r} is not a duration (a number and s, m, h, d or w: 365d)")
    return value


Duration = Annotated[str, AfterValidator(_duration)]


def duration_seconds(value: str) -> int:
    """Seconds in a validated duration ("28d" -> 2419200)."""
    number, unit = _DURATION.match(value).groups()  # type: ignore[union-attr]
    return int(number) * _UNIT_SECONDS[unit]


def _pattern(value: str) -> str:
    try:
        re.compile(value)
    except re.error as error:
        raise ValueError(f"{value!r} is not a regular expression: {error}") from None
    return value


class ValiditySettings(_Section):
    # How long an account stays valid after registration, renewal or sign-in through single
    # sign-on. null (the default): accounts never expire. Off by default because switching it
    # on starts a clock for every account: the operator must first have a mail relay that
    # reaches the agents (the evaluation's mail sink reaches nobody, so every account would
    # be blocked, then deactivated).
    period: Duration | None = None
    # Renewal mails, this long before expiry (each one once per period, each with a new link).
    reminders: list[Duration] = Field(default_factory=lambda: ["28d", "7d", "1d"])
    # An expired account is deactivated this long after its expiry; null: never.
    deactivate_after: Duration | None = "90d"
    # Accounts that never expire (service accounts, bots): regular expressions, each matching
    # a whole Matrix ID ('@bot-.*:example\.org' in YAML). The console's service account and the
    # server notices user never expire in any case.
    exempt: list[Annotated[str, AfterValidator(_pattern)]] = Field(default_factory=list)
    # How often the server looks for renewal mails and deactivations that are due.
    check_interval: Duration = "30m"

    @model_validator(mode="after")
    def _reminders_within_period(self) -> ValiditySettings:
        if self.period is None:
            return self
        period = duration_seconds(self.period)
        if period == 0:
            raise ValueError("period: must be longer than 0 (null switches validity off)")
        for index, reminder in enumerate(self.reminders):
            if not 0 < duration_seconds(reminder) < period:
                raise ValueError(
                    f"reminders.{index}: {reminder} must be longer than 0 and shorter than the "
                    f"period ({self.period})"
                )
        if duration_seconds(self.check_interval) == 0:
            raise ValueError("check_interval: must be longer than 0")
        return self

    def module_config(self) -> dict | None:
        """The module's account_validity block (durations in seconds); None when off."""
        if self.period is None:
            return None
        return {
            "period_seconds": duration_seconds(self.period),
            "reminders_seconds": [duration_seconds(r) for r in self.reminders],
            "deactivate_after_seconds": (
                None if self.deactivate_after is None else duration_seconds(self.deactivate_after)
            ),
            "exempt": list(self.exempt),
            "check_seconds": duration_seconds(self.check_interval),
        }


class AccountsSettings(_Section):
    # Accounts expire unless renewed (README "Account validity").
    validity: ValiditySettings = ValiditySettings()


class PathSettings(_Section):
    # Relative paths are taken from the directory of the settings file
    # (or the current directory when there is no settings file).
    state_dir: Path = Path("var")
    # Where the Python environment that runs every service lives.
    venv_dir: Path = Path(".venv")


class MetricsSettings(_Section):
    """Prometheus metrics: Synapse's own and the appliance's counters, from Synapse's metrics
    listener. It has no authentication, so it listens on loopback only; in production nginx
    serves it at /metrics/ behind HTTP basic authentication (htpasswd_file)."""

    enabled: bool = False
    listen: Listener = Listener(port=9000)
    # Production: the htpasswd file nginx checks /metrics/ against (htpasswd -B); without it,
    # nginx does not serve /metrics/ and only a scraper on this host reaches the listener.
    htpasswd_file: Path | None = None

    @field_validator("listen")
    @classmethod
    def _loopback(cls, value: Listener) -> Listener:
        if not value.is_loopback:
            raise ValueError(
                f"{value.bind_address} is not a loopback address: the metrics listener has no "
                "authentication (production serves it through nginx, see metrics.htpasswd_file)"
            )
        return value

    @field_validator("htpasswd_file")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_absolute():
            raise ValueError("must be an absolute path (nginx reads it)")
        return value


class NginxSettings(_Section):
    # Production: the addresses nginx listens on (every IPv4 and IPv6 address by default).
    bind_addresses: list[Annotated[str, AfterValidator(_ip_address)]] = Field(
        default_factory=lambda: ["0.0.0.0", "::"]
    )
    # The ports nginx serves on (the firewall opens these and SSH, nothing else).
    https_port: Port = 443
    http_port: Port = 80
    federation_port: Port = 8448
    # The certificate chain and private key nginx serves (from Let's Encrypt, given files or
    # self-signed: the Ansible nginx role puts them at these paths).
    certificate: Path = Path("/etc/appliance/tls/fullchain.pem")
    private_key: Path = Path("/etc/appliance/tls/privkey.pem")
    # Served at /.well-known/acme-challenge/ for Let's Encrypt's HTTP-01 challenge.
    acme_webroot: Path = Path("/var/lib/appliance-acme")


class BackupSettings(_Section):
    # Production: the directory of the default repository (<directory>/restic).
    directory: Path = Path("/var/backups/appliance")
    # Production: when the timer runs `appliance backup`, in systemd's OnCalendar syntax.
    schedule: str = "*-*-* 03:15:00"
    # `appliance backup`: the restic repository, a local directory (relative paths are taken
    # from the settings file's directory) or any restic URL (sftp:host:/path, rest:https://...,
    # s3:...) to send the backups off the host. null: ./backups beside the settings file in
    # evaluation, <directory>/restic in production. Never inside paths.state_dir.
    repository: str | None = None
    # The passphrase that encrypts the repository: a 0600 file, made on the first backup when
    # missing. Keep a copy off the host: without it no backup can be read. Never inside
    # paths.state_dir (a restore starts from an empty one).
    passphrase_file: Path = Path("backup-passphrase")
    # Retention (restic forget): the newest backup of each of the last N days, weeks, months.
    keep_daily: Annotated[int, Field(ge=0, le=3650)] = 7
    keep_weekly: Annotated[int, Field(ge=0, le=520)] = 4
    keep_monthly: Annotated[int, Field(ge=0, le=240)] = 12


class HostSettings(_Section):
    # Production: the directory under which the host's system files (systemd units, the nginx
    # site, PostgreSQL and nftables settings, the backup script) are written: / on a host the
    # Ansible roles provision. null renders none of them (evaluation).
    system_root: Path | None = None
    # The system user that runs Synapse and owns its files: its database role, the media and
    # the Synapse secrets (signing key, macaroon and registration secrets). null leaves every
    # file to whoever runs `appliance render` (evaluation: one user runs everything).
    service_user: str | None = None
    # Production (with service_user): the console and the content scanner each run as their own
    # user, who can read neither Synapse's secrets nor the other's files. The console's user
    # (and its group) may read the service token, nothing else of Synapse's.
    console_user: str = "appliance-console"
    content_scanner_user: str = "appliance-scanner"
    # Production with turn.enabled: coturn's user, who owns coturn's config (it holds coturn's
    # copy of the TURN secret) and reads nothing else.
    turn_user: str = "appliance-turn"
    # The firewall keeps this SSH port open beside nginx's ports.
    ssh_port: Port = 22
    # Production on several hosts: this host's private address, where the others reach what it
    # serves (Synapse's processes placed here by synapse.workers.hosts, Redis, PostgreSQL).
    # null: one host runs everything.
    private_address: Annotated[str, AfterValidator(_ip_address)] | None = None

    @model_validator(mode="after")
    def _users_apart(self) -> HostSettings:
        users = (self.service_user, self.console_user, self.content_scanner_user)
        if self.service_user is not None and len(set(users)) < len(users):
            raise ValueError(
                "service_user, console_user and content_scanner_user must be three different "
                "users: a shared user would let the console or the scanner read Synapse's secrets"
            )
        return self


def _server_name_problem(value: str) -> str | None:
    """Why `value` is not a Matrix server name (a DNS name or an IP literal, optional port)."""
    host, _, port = value.rpartition(":") if value.count(":") == 1 else (value, "", "")
    if port and not (port.isdigit() and 1 <= int(port) <= 65535):
        return f"{value!r}: {port!r} is not a port"
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    try:
        _domain_entry(host)
    except ValueError as error:
        if host != "localhost" and not host.endswith(".localhost"):
            return f"{value!r} is not a DNS name: {error}"
    return None


def _peer_server_name(value: str) -> str:
    if problem := _server_name_problem(value):
        raise ValueError(problem)
    return value


class FederationPeer(_Section):
    # The peer's Matrix server name, exactly as in its user IDs (port included if it has one).
    server_name: Annotated[str, AfterValidator(_peer_server_name)]
    # The peer's public URL for clients (https://matrix.other-body.fr/).
    base_url: str
    # agents: its users are agents of that public body; externals: its users are externals
    # here (the network's server for people invited from outside).
    role: Literal["agents", "externals"]
    # The email domains whose agents have their accounts on that peer (agents peers): this
    # server's /_matrix/identity/api/v1/info sends their addresses there.
    domains: list[DomainEntry] = Field(default_factory=list)

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value if value.endswith("/") else value + "/"


# The bounds of every message lifetime (archiving and data-protection rules rarely go below a
# day, and the appliance keeps no message more than a year once a policy is set).
LIFETIME_MIN_DAYS, LIFETIME_MAX_DAYS = 1, 365
LifetimeDays = Annotated[int, Field(ge=LIFETIME_MIN_DAYS, le=LIFETIME_MAX_DAYS)]


class RoomLifetimes(_Section):
    # The message lifetime of each kind of room, in days (null: retention.default_days); set
    # as the room's m.room.retention when the room is created, which its admins may change
    # within retention.min_days..max_days.
    private: LifetimeDays | None = None
    open_to_externals: LifetimeDays | None = None
    forum: LifetimeDays | None = None
    direct: LifetimeDays | None = None


class RetentionSettings(_Section):
    # Messages (Synapse's retention; its purge jobs delete them from the database). A room's
    # own m.room.retention, set by its admins, is honoured within min and max; a room without
    # one keeps its messages default_days (null: until the room's admins set a lifetime).
    min_days: LifetimeDays = LIFETIME_MIN_DAYS
    max_days: LifetimeDays = LIFETIME_MAX_DAYS
    default_days: LifetimeDays | None = None
    rooms: RoomLifetimes = RoomLifetimes()
    # How often Synapse looks for expired messages.
    purge_interval_hours: Annotated[int, Field(ge=1, le=7 * 24)] = 12
    # Media (Synapse's media_retention, checked every hour): files uploaded here and not
    # downloaded for this long, and copies of other servers' files cached here; null: kept.
    local_media_days: Annotated[int, Field(ge=1, le=3650)] | None = None
    remote_media_days: Annotated[int, Field(ge=1, le=3650)] | None = 90


class ServerNoticesSettings(_Section):
    # Announcements from the console go out as Synapse's server notices: from this account
    # (created by Synapse at the first one), into a room of that name every agent is joined to.
    localpart: str = "annonces"
    # The room's members see this name: the module's rule for every display name applies
    # (Latin letters, digits, spaces, hyphens, apostrophes, full stops; 64 at most).
    display_name: str = "Annonces du service - Service announcements"
    room_name: Annotated[str, Field(min_length=1, max_length=255)] = "Annonces - Announcements"

    @field_validator("display_name")
    @classmethod
    def _display_name(cls, value: str) -> str:
        if problem := name_part_problem(value):
            raise ValueError(problem)
        return value

    @field_validator("localpart")
    @classmethod
    def _localpart(cls, value: str) -> str:
        if not value or not all(c in "abcdefghijklmnopqrstuvwxyz0123456789._=-/" for c in value):
            raise ValueError(
                f"{value!r} is not a Matrix localpart (lower-case letters, digits, ._=-/)"
            )
        # The console's service account (service_account.SERVICE_LOCALPART, which imports this).
        if value == "appliance-console":
            raise ValueError("is the console's own service account")
        return value


class FederationSettings(_Section):
    # off: no federation listener, no outgoing federation (the evaluation default: one box).
    # closed: only the peers below (the production default).
    # open: every Matrix server; refused unless i_understand_open_federation is true.
    # Unset means the default of the appliance's mode.
    mode: Literal["off", "closed", "open"] | None = None
    i_understand_open_federation: bool = False
    peers: list[FederationPeer] = Field(default_factory=list)
    # How often each agents peer's published domain list is fetched (a domain added on a peer
    # reaches this server's /_matrix/identity/api/v1/info within two periods).
    domains_refresh_seconds: Annotated[int, Field(ge=1, le=3600)] = 30
    # Certificate authorities (PEM files) trusted for peers' federation certificates beside
    # the system's: a network with its own CA.
    ca_certificates: list[Path] = Field(default_factory=list)
    # Evaluation only (production: nginx serves federation on nginx.federation_port): Synapse
    # itself listens for other servers here, over TLS with this certificate and key.
    listen: Listener = Listener(port=8448)
    certificate: Path | None = None
    private_key: Path | None = None

    @field_validator("peers")
    @classmethod
    def _unique_peers(cls, peers: list[FederationPeer]) -> list[FederationPeer]:
        names = [peer.server_name for peer in peers]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"{name} is listed twice")
        return peers


class Settings(_Section):
    mode: Literal["evaluation", "production"] = "evaluation"
    # The Matrix server name: the part after ':' in every user ID. Cannot change later.
    server_name: str = "appliance.localhost"
    # The URL clients and email links use to reach Synapse.
    public_baseurl: str = "http://127.0.0.1:8008/"
    synapse: SynapseSettings = SynapseSettings()
    console: ConsoleSettings = ConsoleSettings()
    content_scanner: ContentScannerSettings = ContentScannerSettings()
    clamav: ClamavSettings = ClamavSettings()
    mail: MailSettings = MailSettings()
    registration: RegistrationSettings = RegistrationSettings()
    externals: ExternalsSettings = ExternalsSettings()
    auth: AuthSettings = AuthSettings()
    notifications: NotificationSettings = NotificationSettings()
    # Terms of use to accept at registration and at each new version; null: none.
    terms: TermsSettings | None = None
    accounts: AccountsSettings = AccountsSettings()
    paths: PathSettings = PathSettings()
    nginx: NginxSettings = NginxSettings()
    backup: BackupSettings = BackupSettings()
    host: HostSettings = HostSettings()
    federation: FederationSettings = FederationSettings()
    turn: TurnSettings = TurnSettings()
    server_notices: ServerNoticesSettings = ServerNoticesSettings()
    retention: RetentionSettings = RetentionSettings()
    metrics: MetricsSettings = MetricsSettings()

    @field_validator("server_name")
    @classmethod
    def _server_name(cls, value: str) -> str:
        if problem := _server_name_problem(value):
            raise ValueError(problem)
        return value

    @model_validator(mode="before")
    @classmethod
    def _federation_default(cls, data: object) -> object:
        # closed in production (only the peers), off in evaluation (`make up` is one box).
        if not isinstance(data, dict) or not isinstance(data.get("federation", {}), dict):
            return data
        federation = dict(data.get("federation") or {})
        if federation.get("mode") is None:
            production = data.get("mode") == "production"
            federation["mode"] = "closed" if production else "off"
        return {**data, "federation": federation}

    @field_validator("public_baseurl")
    @classmethod
    def _baseurl(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value if value.endswith("/") else value + "/"

    @model_validator(mode="after")
    def _mode_rules(self) -> Settings:
        # Synapse (its Admin API), the console, the scanner and clamd (no authentication at
        # all) are never exposed directly: nginx is the only public listener in production.
        for key, listener in self._listeners().items():
            if not listener.is_loopback:
                raise ValueError(
                    f"{key}.bind_address: {self.mode} mode listens on loopback only "
                    f"(nginx is the public entry), not {listener.bind_address}"
                )
        if self.mode == "production":
            if not self.public_baseurl.startswith("https://"):
                raise ValueError("public_baseurl: production mode needs an https:// URL")
            if self.clamav.signatures == "evaluation":
                raise ValueError(
                    "clamav.signatures: production mode needs real signatures (freshclam)"
                )
            if self.auth.oidc is not None and not self.auth.oidc.issuer.startswith("https://"):
                raise ValueError("auth.oidc.issuer: production mode needs an https:// issuer")
        elif self.turn.enabled and self.turn.tls_port is not None:
            raise ValueError(
                "turn.tls_port: evaluation mode has no certificate for TURN over TLS (null it)"
            )
        self._own_addresses_rules()
        self._one_service_per_address()
        backup = self.backup
        if not (backup.keep_daily or backup.keep_weekly or backup.keep_monthly):
            raise ValueError(
                "backup.keep_daily: keep_daily, keep_weekly and keep_monthly are all 0, which "
                "would delete every backup as soon as it is made"
            )
        self._worker_rules()
        self._federation_rules()
        self._retention_rules()
        self._local_mta_rules()
        if self.host.system_root is not None and self.host.service_user is None:
            raise ValueError(
                "host.service_user: needed with host.system_root (the user the services run as)"
            )
        return self

    def _retention_rules(self) -> None:
        retention = self.retention
        if retention.min_days > retention.max_days:
            raise ValueError(
                f"retention.min_days: {retention.min_days} is more than retention.max_days "
                f"({retention.max_days})"
            )
        lifetimes = {"retention.default_days": retention.default_days}
        lifetimes |= {f"retention.rooms.{k}": v for k, v in retention.rooms.model_dump().items()}
        for key, days in lifetimes.items():
            if days is not None and not retention.min_days <= days <= retention.max_days:
                raise ValueError(
                    f"{key}: {days} is outside retention.min_days..retention.max_days "
                    f"({retention.min_days}..{retention.max_days})"
                )

    def _local_mta_rules(self) -> None:
        mail = self.mail
        if not mail.local_mta.enabled:
            return
        if self.host.system_root is None:
            raise ValueError(
                "mail.local_mta.enabled: the local MTA is Debian's postfix, configured on a "
                "production host (host.system_root); evaluation keeps its mail sink"
            )
        if mail.run_local_sink:
            raise ValueError(
                "mail.local_mta.enabled: relays to mail.smtp_host, which cannot also be the "
                "local sink (set mail.run_local_sink: false)"
            )
        if _same_socket(mail.smtp_host, "127.0.0.1") and mail.smtp_port == mail.local_mta.port:
            raise ValueError(
                f"mail.local_mta.port: {mail.local_mta.port} is the relay's own port on "
                f"{mail.smtp_host}: the MTA would relay to itself"
            )

    def _own_addresses_rules(self) -> None:
        if self.synapse.own_addresses and not self.public_baseurl.startswith("https://"):
            raise ValueError(
                "synapse.own_addresses: only used with an https:// public_baseurl "
                "(Synapse calls identity services over HTTPS)"
            )
        listened = {str(ipaddress.ip_address(a)) for a in self.nginx.bind_addresses}
        for address in self.synapse.own_addresses:
            wildcard = "::" if ":" in address else "0.0.0.0"
            if not {address, wildcard} & listened:
                raise ValueError(
                    f"synapse.own_addresses: nginx does not listen on {address} "
                    "(add it to nginx.bind_addresses)"
                )

    def _one_service_per_address(self) -> None:
        """Two services on one address and port: the second could never start (or, worse,
        clients would reach the wrong one); refused with both keys. A wildcard address (nginx's
        0.0.0.0 or ::) takes the port on every address of its family."""
        bound = [
            (f"{key}.port", listener.bind_address, listener.port)
            for key, listener in self._listeners().items()
        ]
        if self.mail.run_local_sink:
            bound.append(("mail.smtp_port", self.mail.smtp_host, self.mail.smtp_port))
        if self.turn.enabled:
            turn = self.turn
            bound.append(("turn.listen.port", turn.listen.bind_address, turn.listen.port))
            if turn.tls_port is not None:
                bound.append(("turn.tls_port", turn.listen.bind_address, turn.tls_port))
        if self.mail.local_mta.enabled:
            bound.append(("mail.local_mta.port", "127.0.0.1", self.mail.local_mta.port))
        if self.mode == "production":
            nginx = self.nginx
            for key in ("https_port", "http_port", "federation_port"):
                port = getattr(nginx, key)
                bound += [(f"nginx.{key}", address, port) for address in nginx.bind_addresses]
        seen: list[tuple[str, str, int]] = []
        for key, host, port in bound:
            for other_key, other_host, other_port in seen:
                if port == other_port and _same_socket(host, other_host):
                    raise ValueError(
                        f"{key}: {host}:{port} is already {other_key}'s ({other_host}:{port}); "
                        "two services cannot listen on the same address and port"
                    )
            seen.append((key, host, port))

    def worker_plan(self) -> WorkerPlan:
        return self.synapse.worker_plan(production=self.mode == "production")

    @property
    def several_hosts(self) -> bool:
        """Production on several hosts (synapse.workers.hosts.main set)."""
        return self.synapse.workers.hosts.main is not None

    def process_bind_address(self, name: str) -> str:
        """Where the Synapse process `name` listens for the other processes (replication, and
        a worker's HTTP): its host's private address, else synapse.listen's."""
        return self.worker_plan().host_of(name, self.synapse.listen.bind_address)

    def process_address(self, name: str) -> str:
        """Where the others reach the Synapse process `name` (instance_map, nginx)."""
        return self.worker_plan().host_of(name, self.synapse.listen.connect_host)

    @property
    def local_processes(self) -> list[str]:
        """The Synapse processes this host runs (all of them on one host)."""
        return self.worker_plan().processes_on(self.host.private_address)

    @property
    def runs_redis(self) -> bool:
        """Production: this host runs the Redis Synapse's processes share (host and port)."""
        redis = self.synapse.redis
        if self.host.system_root is None or redis is None or redis.host is None:
            return False
        if not self.worker_plan().enabled:
            return False
        return self.host.private_address in (None, redis.host)

    @property
    def runs_postgresql(self) -> bool:
        """Production: this host runs Synapse's PostgreSQL (its socket, or its private address)."""
        database = self.synapse.database
        if self.host.system_root is None or not isinstance(database, PostgresDatabase):
            return False
        if self.host.private_address is None or database.host.startswith("/"):
            return True
        return database.host == self.host.private_address

    @property
    def postgresql_clients(self) -> list[str]:
        """Several hosts: the addresses PostgreSQL lets in (pg_hba): the Synapse hosts only."""
        return self.worker_plan().hosts

    @property
    def routes_locally(self) -> bool:
        """Evaluation with workers: the local router listens on synapse.listen (where clients,
        the console and the scanner go) and sends each request to its process."""
        return self.mode == "evaluation" and self.synapse.workers.preset != "none"

    @property
    def synapse_main_port(self) -> int:
        """The main Synapse process's client listener."""
        if self.routes_locally:
            return self.synapse.workers.main_port
        return self.synapse.listen.port

    @property
    def synapse_main_url(self) -> str:
        """Where the main process answers directly (not through the local router)."""
        listen = self.synapse.listen
        return Listener(bind_address=listen.bind_address, port=self.synapse_main_port).url

    def _worker_rules(self) -> None:
        workers, database = self.synapse.workers, self.synapse.database
        if workers.preset != "standard":
            for key in ("sync_workers", "client_workers"):
                if getattr(workers, key) is not None:
                    raise ValueError(f"synapse.workers.{key}: only used with preset standard")
        plan = self.worker_plan()
        if not plan.enabled:
            return
        if database.engine != "postgresql":
            raise ValueError(
                f"synapse.workers.preset: {workers.preset} needs PostgreSQL "
                "(synapse.database.engine: postgresql): processes cannot share SQLite"
            )
        if self.synapse.redis is None:
            raise ValueError(
                f"synapse.workers.preset: {workers.preset} needs synapse.redis "
                "(Synapse's processes replicate through Redis)"
            )
        problems = plan_problems(
            plan, pool_max=database.pool_max, max_connections=database.max_connections
        )
        if problems:
            raise ValueError(f"synapse.workers: {problems[0]}")
        self._worker_ports_free(plan)
        if self.several_hosts:
            self._several_hosts_rules(plan)

    def _several_hosts_rules(self, plan: WorkerPlan) -> None:
        """Processes on several hosts reach each other, PostgreSQL and Redis over the network."""
        database, redis, host = self.synapse.database, self.synapse.redis, self.host
        if not isinstance(database, PostgresDatabase):
            return  # _worker_rules refused it already
        if self.mode != "production":
            raise ValueError("synapse.workers.hosts: several hosts are a production layout")
        if host.private_address is None:
            raise ValueError(
                "host.private_address: needed with synapse.workers.hosts (this host's own "
                "address, where the other hosts reach what it serves)"
            )
        if database.host.startswith("/") or not _is_ip(database.host):
            raise ValueError(
                f"synapse.database.host: {database.host} is not an IP address; with "
                "synapse.workers.hosts every Synapse host reaches PostgreSQL at its private address"
            )
        if database.password is None:
            raise ValueError(
                "synapse.database.password: needed with synapse.workers.hosts (over the "
                "network PostgreSQL asks each Synapse host for it; keep it in the vault)"
            )
        if redis is not None and (redis.host is None or not _is_ip(redis.host)):
            raise ValueError(
                "synapse.redis.host: the Redis host's private address, needed with "
                "synapse.workers.hosts (a unix socket reaches no other host)"
            )
        served = set(plan.hosts) | {database.host} | {redis.host if redis else None}
        if host.private_address not in served:
            raise ValueError(
                f"host.private_address: {host.private_address} runs nothing: it is none of "
                "synapse.workers.hosts, synapse.database.host, synapse.redis.host"
            )

    def _worker_ports_free(self, plan: WorkerPlan) -> None:
        taken = {listener.port: key for key, listener in self._listeners().items()}
        ports = {"synapse.workers.replication_port": plan.main_replication_port}
        if self.routes_locally:
            ports["synapse.workers.main_port"] = self.synapse.workers.main_port
        for worker in plan.workers:
            ports[f"worker {worker.name} (HTTP)"] = worker.http_port
            ports[f"worker {worker.name} (replication)"] = worker.replication_port
        for what, port in ports.items():
            if port > 65535:
                raise ValueError(f"synapse.workers.base_port: {what} would need port {port}")
            if port in taken:
                raise ValueError(
                    f"synapse.workers: {what} would listen on port {port}, already {taken[port]}'s"
                )
            taken[port] = what

    def _federation_rules(self) -> None:
        federation = self.federation
        if federation.mode == "open" and not federation.i_understand_open_federation:
            raise ValueError(
                "federation.mode: open federates with every Matrix server, whose users no rule "
                "here can tell apart; set federation.i_understand_open_federation: true to insist"
            )
        own_domains = set(self.registration.allowed_domains)
        for index, peer in enumerate(federation.peers):
            if peer.server_name == self.server_name:
                raise ValueError(f"federation.peers.{index}.server_name: this server itself")
            if peer.role == "externals" and peer.domains:
                raise ValueError(
                    f"federation.peers.{index}.domains: the externals' server owns no domain"
                )
            for domain in own_domains & set(peer.domains):
                raise ValueError(
                    f"federation.peers.{index}.domains: {domain} is this server's own "
                    "(registration.allowed_domains): an address belongs to one server"
                )
        if self.mode == "production":
            host = self.server_name.rpartition(":")[0] if ":" in self.server_name else ""
            if _is_ip(host or self.server_name):
                raise ValueError("server_name: production mode needs a DNS name")
        elif federation.mode != "off":
            for key in ("certificate", "private_key"):
                if getattr(federation, key) is None:
                    raise ValueError(
                        f"federation.{key}: needed in evaluation mode with federation "
                        "(Synapse serves other servers over TLS itself)"
                    )

    def _listeners(self) -> dict[str, Listener]:
        listeners = {
            "synapse.listen": self.synapse.listen,
            "console.listen": self.console.listen,
            "content_scanner.listen": self.content_scanner.listen,
            "clamav.listen": self.clamav.listen,
        }
        if self.mode == "evaluation" and self.federation.mode != "off":
            listeners["federation.listen"] = self.federation.listen
        if self.metrics.enabled:
            listeners["metrics.listen"] = self.metrics.listen
        return listeners


def _same_socket(first: str, second: str) -> bool:
    """Whether two listeners on one port would collide: the same address, or a wildcard and an
    address of its family (IPv6 wildcards are v6-only, as nginx binds them)."""
    try:
        a, b = ipaddress.ip_address(first), ipaddress.ip_address(second)
    except ValueError:
        return first.lower() == second.lower()  # a host name (the mail sink's smtp_host)
    if a == b:
        return True
    return a.version == b.version and (a.is_unspecified or b.is_unspecified)


def _format_location(location: tuple) -> str:
    # Pydantic adds the union member's tag ("postgresql") to the path; readers want the key.
    parts = [str(part) for part in location if part not in ("sqlite", "postgresql")]
    return ".".join(parts) or "(top level)"


def _format_error(error: ErrorDetails) -> str:
    where = _format_location(error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown key"
    message = error["msg"].removeprefix("Value error, ")
    if not error["loc"]:
        return message  # model-level rules already name their key
    return f"{where}: {message}"


def parse_settings(data: object, source: str) -> Settings:
    """Validate a settings mapping; raise SettingsError listing every problem with its key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SettingsError(source, ["(top level): must be a mapping of keys to values"])
    try:
        return Settings.model_validate(data)
    except ValidationError as error:
        raise SettingsError(source, [_format_error(e) for e in error.errors()]) from None


def settings_path(explicit: str | os.PathLike | None = None) -> Path:
    """The settings file in use: explicit, else $APPLIANCE_CONFIG, else ./appliance.yaml."""
    return Path(explicit or os.environ.get(SETTINGS_ENV) or DEFAULT_SETTINGS_FILE).absolute()


def load_settings(path: str | os.PathLike | None = None) -> tuple[Settings, Path]:
    """Read and validate the settings; return them with the base directory for relative paths.

    The file is optional unless named explicitly: without it every default applies.
    """
    file = settings_path(path)
    named = path is not None or SETTINGS_ENV in os.environ
    if not file.exists():
        if named:
            raise SettingsError(str(file), ["the settings file does not exist"])
        return parse_settings({}, "defaults"), Path.cwd()
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise SettingsError(str(file), [f"cannot be read: {error}"]) from None
    except yaml.YAMLError as error:
        raise SettingsError(str(file), [f"is not valid YAML: {error}"]) from None
    return parse_settings(data, str(file)), file.parent
