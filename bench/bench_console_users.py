# SPDX-License-Identifier: AGPL-3.0-or-later
"""The console's user list page with 10,000 and 100,000 users on the server, against a plain
Admin API call for the same page, in the same run (must stay flat).

Set-up, BENCHMARK ONLY: the users are inserted straight into the SQLite database of a throwaway
Synapse while it is stopped (`users`, `profiles`, `user_threepids`, `user_directory` and
`user_directory_search` rows, as Synapse writes them), because registering 100,000 accounts
through the API would take hours. Nothing else ever writes there. At either size, ADMINS of
them are server admins and DEACTIVATED are deactivated, spread evenly over the ID order: a
fixed few among more and more users, the case an unindexed filter gets slower with.

Two throwaway Synapses run side by side, one with 10,000 users and one with 100,000, and every
request takes its turn with the others (round after round), so that the growth from one size
to the other is not the machine's load changing between two measurements. Measured, each the
median of ROUNDS requests, after one request not counted:
- console: the server time of GET /users/ (the first page, a Matrix ID prefix search matching
  100 users, a display-name word search matching one, the server admins, the deactivated
  users), through the WSGI app in-process, logged in; it includes its call to the module's
  user list endpoint;
- Admin API: GET /_synapse/admin/v3/users for the same page (same page size, same search text
  as its `name`, `admins=true` for the admins, `deactivated=true` for the deactivated), which
  counts every match and pages by offset.

    .venv/bin/python bench/bench_console_users.py
"""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests
from flask.testing import FlaskClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bench_result import Row, at_most, emit, medians_ms  # noqa: E402
from harness import evaluation_settings  # noqa: E402  (free ports, temp state)

from admin_console import create_app  # noqa: E402
from admin_console.users.views import PAGE_SIZE  # noqa: E402
from appliance.config.layout import Layout  # noqa: E402
from appliance.config.render import render_all, write_all  # noqa: E402
from appliance.config.secrets_store import ensure_secrets  # noqa: E402
from appliance.evaluation import services  # noqa: E402
from appliance.evaluation.lifecycle import EvaluationAppliance  # noqa: E402
from appliance.evaluation.supervisor import start, stop, wait_until_ready  # noqa: E402
from appliance.operations.service_account import ensure_service_token  # noqa: E402

SIZES = (10_000, 100_000)
ROUNDS = 21
FLAT = 1.3  # the console's growth from 10,000 to 100,000 users still called flat
DOMAIN = "bench.example.fr"
ADMINS = 10  # and the service account
DEACTIVATED = 100  # two pages' worth
# Synapse's Admin API list as the console's list would be without the module: v3, where
# `deactivated` filters (false: active only), guests left out, one page.
ADMIN_API_PAGE = {"from": 0, "limit": PAGE_SIZE, "guests": "false"}
ACTIVE = {**ADMIN_API_PAGE, "deactivated": "false"}
# (label, the console's query string, the Admin API's query for the same page)
QUERIES = (
    ("first page", "", ACTIVE),
    ("ID prefix", "q=agent0042", {**ACTIVE, "name": "agent0042"}),  # agent004200-299
    ("name word", "q=nom004242", {**ACTIVE, "name": "nom004242"}),  # one user
    ("admins", "kind=admins", {**ADMIN_API_PAGE, "admins": "true"}),
    ("deactivated", "kind=deactivated", {**ADMIN_API_PAGE, "deactivated": "true"}),
)


class BenchSynapse:
    def __init__(self, directory: Path):
        settings = evaluation_settings(directory)
        self.appliance = EvaluationAppliance(settings, Layout.from_settings(settings, directory))
        self.layout = self.appliance.layout
        self.spec = services.synapse(settings, self.layout)
        self.url = settings.synapse.listen.url
        self.server_name = settings.server_name

    def start(self) -> None:
        reason = wait_until_ready(self.spec, start(self.spec))
        if reason:
            raise SystemExit(f"synapse did not start: {reason}")

    def stop(self) -> None:
        stop(self.spec)

    def set_up(self) -> None:
        ensure_secrets(self.layout)
        write_all(render_all(self.appliance.settings, self.layout))
        self.start()
        ensure_service_token(
            self.url,
            shared_secret_file=self.layout.secret("registration_shared_secret"),
            password_file=self.layout.secret("synapse-service-password"),
            token_file=self.layout.service_token,
        )
        self.wait_for_background_updates()

    def wait_for_background_updates(self, timeout: float = 300) -> None:
        """A fresh database gets some of its indexes (e.g. profiles by full user ID) from
        background updates: measure once they are there, as on any server in service."""
        token = self.layout.service_token.read_text().strip()
        deadline = time.monotonic() + timeout
        while requests.get(
            f"{self.url}/_synapse/admin/v1/background_updates/status",
            timeout=30,
            headers={"Authorization": f"Bearer {token}"},
        ).json()["current_updates"]:
            if time.monotonic() > deadline:
                raise SystemExit("synapse's background updates did not finish")
            time.sleep(0.5)

    def insert_users(self, first: int, last: int) -> None:
        """BENCHMARK ONLY: rows written while Synapse is stopped."""
        self.stop()
        now = int(time.time())
        database = sqlite3.connect(self.layout.synapse_dir / "homeserver.db")
        numbers = range(first, last)
        with database:
            database.executemany(
                "INSERT INTO users (name, password_hash, creation_ts, admin, is_guest, "
                "deactivated, shadow_banned, approved, locked, suspended) "
                "VALUES (?, '', ?, 0, 0, 0, 0, 1, 0, 0)",
                ((self._user_id(n), now) for n in numbers),
            )
            database.executemany(
                "INSERT INTO profiles (user_id, displayname, full_user_id) VALUES (?, ?, ?)",
                ((self._localpart(n), self._name(n), self._user_id(n)) for n in numbers),
            )
            database.executemany(
                "INSERT INTO user_threepids (user_id, medium, address, validated_at, added_at)"
                " VALUES (?, 'email', ?, ?, ?)",
                (
                    (self._user_id(n), f"agent{n:06d}@{DOMAIN}", now * 1000, now * 1000)
                    for n in numbers
                ),
            )
            database.executemany(
                "INSERT INTO user_directory (user_id, room_id, display_name) VALUES (?, NULL, ?)",
                ((self._user_id(n), self._name(n)) for n in numbers),
            )
            # Synapse's SQLite full-text row: the user ID, then the lower-cased display name.
            database.executemany(
                "INSERT INTO user_directory_search (user_id, value) VALUES (?, ?)",
                (
                    (self._user_id(n), f"{self._user_id(n)} {self._name(n).lower()}")
                    for n in numbers
                ),
            )
            self._mark(database, "admin", ADMINS, last)
            self._mark(database, "deactivated", DEACTIVATED, last)
        database.close()
        self.start()

    def _mark(self, database: sqlite3.Connection, column: str, count: int, size: int) -> None:
        """Set column (admin or deactivated) on count users spread evenly over the ID order."""
        step = size // count
        database.executemany(
            f"UPDATE users SET {column} = 1 WHERE name = ?",
            ((self._user_id(n),) for n in range(step // 2, size, step)),
        )

    def _name(self, n: int) -> str:
        return f"Agent Nom{n:06d} [{DOMAIN}]"

    def _localpart(self, n: int) -> str:
        return f"agent{n:06d}-{DOMAIN}"

    def _user_id(self, n: int) -> str:
        return f"@{self._localpart(n)}:{self.server_name}"


def console_client(synapse: BenchSynapse, directory: Path):
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "bench",
            "SESSION_TIMEOUT_MINUTES": 30,
            "SYNAPSE_URL": synapse.url,
            "SERVICE_TOKEN_FILE": str(synapse.layout.service_token),
            "DATABASE": str(directory / "console.sqlite3"),
            "FIRST_OPERATOR_FILE": str(directory / "operator.json"),
            "WTF_CSRF_ENABLED": False,
        }
    )
    client = app.test_client()
    credentials = json.loads((directory / "operator.json").read_text())
    assert client.post("/login", data=credentials).status_code == 302
    return client


@dataclass
class Server:
    size: int
    synapse: BenchSynapse
    console: FlaskClient
    admin_api: requests.Session


def serve(size: int, directory: Path, started: list[BenchSynapse]) -> Server:
    directory.mkdir()
    synapse = BenchSynapse(directory)
    started.append(synapse)
    synapse.set_up()
    synapse.insert_users(0, size)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {synapse.layout.service_token.read_text().strip()}"
    return Server(size, synapse, console_client(synapse, directory), session)


def page_calls(server: Server, console_query: str, params: dict) -> dict[tuple, Callable]:
    def console_page() -> None:
        response = server.console.get(f"/users/?{console_query}")
        assert response.status_code == 200 and b'class="list users"' in response.data, (
            f"{console_query or 'first page'}: {response.status_code} {response.data[-2000:]!r}"
        )

    def admin_api() -> None:
        url = f"{server.synapse.url}/_synapse/admin/v3/users"
        response = server.admin_api.get(url, params=params)
        assert response.status_code == 200 and response.json()["users"]

    return {(server.size, "console"): console_page, (server.size, "api"): admin_api}


def main() -> None:
    started: list[BenchSynapse] = []
    table: dict[str, dict[tuple, float]] = {}
    with tempfile.TemporaryDirectory() as state:
        try:
            servers = [serve(size, Path(state) / str(size), started) for size in SIZES]
            for label, console_query, admin_query in QUERIES:
                calls = {}
                for server in servers:
                    calls.update(page_calls(server, console_query, admin_query))
                table[label] = medians_ms(calls, ROUNDS)
        finally:
            for synapse in started:
                synapse.stop()
    print(f"user list page ({PAGE_SIZE} per page), median of {ROUNDS} requests, ms:")
    print(f"{'users':>8}  {'query':<12} {'console':>9} {'Admin API':>10} {'ratio':>7}")
    print("(ratio: console / Admin API for the same page; growth: 100,000 / 10,000 users)")
    for size in SIZES:
        for label, figures in table.items():
            console_ms, api_ms = figures[(size, "console")], figures[(size, "api")]
            print(
                f"{size:>8,}  {label:<12} {console_ms:>9.1f} {api_ms:>10.1f} "
                f"{console_ms / api_ms:>7.2f}"
            )
    small, large = SIZES
    rows: list[Row] = []
    for label, figures in table.items():
        console_growth = figures[(large, "console")] / figures[(small, "console")]
        api_growth = figures[(large, "api")] / figures[(small, "api")]
        print(
            f"{label}: console {large:,} / {small:,} users = {console_growth:.2f}, "
            f"Admin API {api_growth:.2f}"
        )
        figure = (
            f"{figures[(small, 'console')]:.0f} -> {figures[(large, 'console')]:.0f} ms "
            f"(Admin API {figures[(small, 'api')]:.0f} -> {figures[(large, 'api')]:.0f} ms, "
            f"{api_growth:.2f})"
        )
        what = f"user list, {label}: {large:,} / {small:,} users"
        rows.append(at_most(what, figure, console_growth, FLAT))
    emit("console_users", rows)


if __name__ == "__main__":
    main()
