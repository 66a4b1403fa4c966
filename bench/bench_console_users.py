"""The console's user list page with 10,000 and 100,000 users on the server, against a plain
Admin API call for the same page, in the same run (must stay flat).

Set-up, BENCHMARK ONLY: the users are inserted straight into the SQLite database of a throwaway
Synapse while it is stopped (`users` and `profiles` rows, as Synapse writes them), because
registering 100,000 accounts through the API would take hours. Nothing else ever writes there.

Measured, each the median of ROUNDS requests, the slowest first request dropped:
- console: the server time of GET /users/ (first page, then a search), through the WSGI app
  in-process, logged in; it includes the console's own Admin API call;
- Admin API: GET /_synapse/admin/v3/users with the very parameters the console sends.

    .venv/bin/python bench/bench_console_users.py
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from harness import evaluation_settings  # noqa: E402  (free ports, temp state)

from admin_console import create_app  # noqa: E402
from admin_console.synapse_admin.users import UserQuery  # noqa: E402
from admin_console.users.views import PAGE_SIZE  # noqa: E402
from appliance import services  # noqa: E402
from appliance.evaluation import EvaluationAppliance  # noqa: E402
from appliance.layout import Layout  # noqa: E402
from appliance.render import render_all, write_all  # noqa: E402
from appliance.secrets_store import ensure_secrets  # noqa: E402
from appliance.service_account import ensure_service_token  # noqa: E402
from appliance.supervisor import start, stop, wait_until_ready  # noqa: E402

SIZES = (10_000, 100_000)
ROUNDS = 15
DOMAIN = "bench.example.fr"
SEARCH = "agent0042"  # matches 10 (at 10k) or 11 (at 100k) of the inserted users


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
            self.url, shared_secret_file=self.layout.secret("registration_shared_secret"),
            password_file=self.layout.secret("synapse-service-password"),
            token_file=self.layout.service_token,
        )

    def insert_users(self, first: int, last: int) -> None:
        """BENCHMARK ONLY: rows written while Synapse is stopped."""
        self.stop()
        now = int(time.time())
        database = sqlite3.connect(self.layout.synapse_dir / "homeserver.db")
        with database:
            database.executemany(
                "INSERT INTO users (name, password_hash, creation_ts, admin, is_guest, "
                "deactivated, shadow_banned, approved, locked, suspended) "
                "VALUES (?, '', ?, 0, 0, 0, 0, 1, 0, 0)",
                ((self._user_id(n), now) for n in range(first, last)),
            )
            database.executemany(
                "INSERT INTO profiles (user_id, displayname, full_user_id) VALUES (?, ?, ?)",
                ((self._localpart(n), f"Agent {n} [{DOMAIN}]", self._user_id(n))
                 for n in range(first, last)),
            )
        database.close()
        self.start()

    def _localpart(self, n: int) -> str:
        return f"agent{n:06d}-{DOMAIN}"

    def _user_id(self, n: int) -> str:
        return f"@{self._localpart(n)}:{self.server_name}"


def console_client(synapse: BenchSynapse, directory: Path):
    app = create_app({
        "TESTING": True, "SECRET_KEY": "bench", "SESSION_TIMEOUT_MINUTES": 30,
        "SYNAPSE_URL": synapse.url, "SERVICE_TOKEN_FILE": str(synapse.layout.service_token),
        "DATABASE": str(directory / "console.sqlite3"),
        "FIRST_OPERATOR_FILE": str(directory / "operator.json"), "WTF_CSRF_ENABLED": False,
    })
    client = app.test_client()
    credentials = json.loads((directory / "operator.json").read_text())
    assert client.post("/login", data=credentials).status_code == 302
    return client


def median_ms(call) -> float:
    call()  # warm caches; not counted
    samples = []
    for _ in range(ROUNDS):
        began = time.perf_counter()
        call()
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples)


def measure(synapse: BenchSynapse, client) -> dict[str, tuple[float, float]]:
    token = synapse.layout.service_token.read_text().strip()
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    results = {}
    for label, search in (("first page", ""), (f"search {SEARCH!r}", SEARCH)):
        params = UserQuery(search, limit=PAGE_SIZE).params()

        def console_page() -> None:
            response = client.get(f"/users/?q={search}")
            assert response.status_code == 200

        def admin_api() -> None:
            response = session.get(f"{synapse.url}/_synapse/admin/v3/users", params=params)
            assert response.status_code == 200 and response.json()["users"]

        results[label] = (median_ms(console_page), median_ms(admin_api))
    return results


def main() -> None:
    with tempfile.TemporaryDirectory() as state, tempfile.TemporaryDirectory() as console_dir:
        synapse = BenchSynapse(Path(state))
        synapse.set_up()
        try:
            client = console_client(synapse, Path(console_dir))
            inserted, table = 0, {}
            for size in SIZES:
                synapse.insert_users(inserted, size)
                inserted = size
                table[size] = measure(synapse, client)
        finally:
            synapse.stop()
    print(f"user list page ({PAGE_SIZE} per page), median of {ROUNDS} requests, ms:")
    print(f"{'users':>8}  {'query':<18} {'console':>9} {'Admin API':>10} {'ratio':>7}")
    for size, rows in table.items():
        for label, (console_ms, api_ms) in rows.items():
            print(f"{size:>8,}  {label:<18} {console_ms:>9.1f} {api_ms:>10.1f} "
                  f"{console_ms / api_ms:>7.2f}")
    small, large = SIZES
    for label in table[small]:
        console_growth = table[large][label][0] / table[small][label][0]
        api_growth = table[large][label][1] / table[small][label][1]
        print(f"{label}: console {large:,} / {small:,} users = {console_growth:.2f}, "
              f"Admin API {api_growth:.2f}")


if __name__ == "__main__":
    main()
