# SPDX-License-Identifier: AGPL-3.0-or-later
"""Where every file of the appliance lives, derived from the settings' state directory.

Each service's secrets live in its own directory, so that in production (one system user per
service) directory ownership alone keeps a service out of the others' secrets:
- secrets/: Synapse's (signing key, macaroon, registration and form secrets) and the console
  service account's password; only Synapse's user reads them.
- console/: the console's session key, its database and the first operator's credentials.
- content-scanner/: the scanner's key for encrypted request bodies and its verdicts.
- service-token/: the console's Synapse admin token, written by root (`appliance
  service-token`), readable by the console's group.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# The repository (or installed source tree) holds the Jinja2 templates of every config file.
SOURCE_ROOT = Path(__file__).resolve().parents[2]
TEMPLATES_DIR = SOURCE_ROOT / "templates"


@dataclass(frozen=True)
class Layout:
    state_dir: Path
    venv_dir: Path
    # Evaluation: one user runs every service. Production (host.service_user set): one user each.
    one_user: bool = True

    @classmethod
    def from_settings(cls, settings, base_dir: Path) -> Layout:
        return cls(
            state_dir=(base_dir / settings.paths.state_dir).resolve(),
            venv_dir=(base_dir / settings.paths.venv_dir).resolve(),
            one_user=settings.host.service_user is None,
        )

    # Directories -----------------------------------------------------------------------------
    @property
    def secrets_dir(self) -> Path:
        return self.state_dir / "secrets"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "log"

    @property
    def mail_dir(self) -> Path:
        return self.state_dir / "mail"

    @property
    def synapse_dir(self) -> Path:
        return self.state_dir / "synapse"

    @property
    def synapse_templates_dir(self) -> Path:
        """Synapse's mail and confirmation-page templates (from templates/synapse/email/)."""
        return self.synapse_dir / "templates"

    @property
    def synapse_workers_dir(self) -> Path:
        """One rendered config per Synapse worker (synapse.workers.preset other than none)."""
        return self.synapse_dir / "workers"

    def worker_config(self, name: str) -> Path:
        return self.synapse_workers_dir / f"{name}.yaml"

    @property
    def router_config(self) -> Path:
        """Evaluation with workers: the local router's routes (from worker_routes)."""
        return self.synapse_dir / "router.json"

    @property
    def media_store(self) -> Path:
        return self.synapse_dir / "media_store"

    @property
    def clamav_dir(self) -> Path:
        return self.state_dir / "clamav"

    @property
    def clamav_database_dir(self) -> Path:
        return self.clamav_dir / "db"

    @property
    def console_dir(self) -> Path:
        return self.state_dir / "console"

    @property
    def content_scanner_dir(self) -> Path:
        """The content scanner's config and its verdict database."""
        return self.state_dir / "content-scanner"

    @property
    def turn_dir(self) -> Path:
        """coturn's config (it holds coturn's copy of the TURN secret: 0600) and pid file."""
        return self.state_dir / "turn"

    @property
    def turn_config(self) -> Path:
        return self.turn_dir / "turnserver.conf"

    @property
    def service_token_dir(self) -> Path:
        return self.state_dir / "service-token"

    def writable_dirs(self) -> dict[str, Path]:
        """Every directory a service writes to, by what it is for (used in preflight errors)."""
        return {
            "secrets": self.secrets_dir,
            "run": self.run_dir,
            "log": self.log_dir,
            "mail": self.mail_dir,
            "synapse": self.synapse_dir,
            "media_store": self.media_store,
            "clamav": self.clamav_dir,
            "clamav_database": self.clamav_database_dir,
            "console": self.console_dir,
            "content_scanner": self.content_scanner_dir,
            "turn": self.turn_dir,
            "service_token": self.service_token_dir,
        }

    # Files -----------------------------------------------------------------------------------
    @property
    def homeserver_config(self) -> Path:
        return self.synapse_dir / "homeserver.yaml"

    @property
    def synapse_log_config(self) -> Path:
        return self.synapse_dir / "log_config.yaml"

    @property
    def synapse_signing_key(self) -> Path:
        return self.secrets_dir / "synapse.signing.key"

    @property
    def clamd_config(self) -> Path:
        return self.clamav_dir / "clamd.conf"

    @property
    def console_config(self) -> Path:
        return self.console_dir / "console.json"

    @property
    def content_scanner_config(self) -> Path:
        return self.content_scanner_dir / "content-scanner.json"

    @property
    def console_database(self) -> Path:
        return self.console_dir / "console.sqlite3"

    @property
    def console_first_operator(self) -> Path:
        """The first operator's generated credentials; the console deletes them when replaced.

        Evaluation keeps them where its contract says, var/secrets/; with a user per service the
        console may not enter Synapse's secrets directory, so they live in the console's own."""
        home = self.secrets_dir if self.one_user else self.console_dir
        return home / "console-admin.json"

    @property
    def console_secret_key(self) -> Path:
        """The key that signs the console's session cookies."""
        return self.console_dir / "secret-key"

    @property
    def content_scanner_body_key(self) -> Path:
        """The scanner's private key for encrypted request bodies (it makes it on first start)."""
        return self.content_scanner_dir / "body-key"

    @property
    def service_token(self) -> Path:
        """The console's Synapse admin access token."""
        return self.service_token_dir / "synapse-service-token"

    @property
    def service_account_password(self) -> Path:
        """The password of the console's service account, to get a new token if one is revoked."""
        return self.secrets_dir / "synapse-service-password"

    @property
    def redis_acl(self) -> Path:
        """Evaluation with workers: the private Redis's user, with the SHA-256 of its password."""
        return self.secrets_dir / "redis-users.acl"

    def secret(self, name: str) -> Path:
        """Where the secret `name` lives: in its service's own directory if it is the console's
        or the scanner's, else with Synapse's."""
        own = {
            "console_secret_key": self.console_secret_key,
            "content_scanner_body_key": self.content_scanner_body_key,
        }
        return own.get(name, self.secrets_dir / name)

    def pidfile(self, service: str) -> Path:
        return self.run_dir / f"{service}.pid"

    def logfile(self, service: str) -> Path:
        return self.log_dir / f"{service}.log"

    def venv_bin(self, program: str) -> Path:
        return self.venv_dir / "bin" / program
