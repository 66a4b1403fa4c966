# SPDX-License-Identifier: AGPL-3.0-or-later
"""The Synapse service token is read by the console's Synapse client only, and the health page,
which probes Synapse on its own, sends it nowhere (a tiny real HTTP server stands for Synapse)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import admin_console

PACKAGE = Path(admin_console.__file__).parent
TOKEN_READER = PACKAGE / "synapse_admin" / "client.py"


def test_only_the_synapse_client_reads_the_service_token_file():
    readers = {
        path.relative_to(PACKAGE)
        for path in PACKAGE.rglob("*.py")
        if "SERVICE_TOKEN_FILE" in path.read_text()
    }
    assert readers == {TOKEN_READER.relative_to(PACKAGE)}


class FakeSynapse(ThreadingHTTPServer):
    """Answers Synapse's health and version endpoints and keeps each request's Authorization."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[tuple[str, str | None]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeSynapse

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server.seen.append((self.path, self.headers.get("Authorization")))
        if self.path == "/health":
            body, kind = b"OK", "text/plain"
        elif self.path == "/_synapse/admin/v1/server_version":
            body, kind = json.dumps({"server_version": "1.163.2"}).encode(), "application/json"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def fake_synapse() -> Iterator[FakeSynapse]:
    server = FakeSynapse()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_the_health_page_probes_synapse_without_the_service_token(app, console, fake_synapse):
    app.config["SYNAPSE_URL"] = fake_synapse.url
    checks = {c["name"]: c for c in console.client.get("/health/checks.json").get_json()["checks"]}
    assert checks["synapse"]["ok"] and "Synapse 1.163.2" in checks["synapse"]["summary"]
    paths = [path for path, _ in fake_synapse.seen]
    assert "/health" in paths and "/_synapse/admin/v1/server_version" in paths
    assert [auth for _, auth in fake_synapse.seen] == [None] * len(paths)
