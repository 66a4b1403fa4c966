# SPDX-License-Identifier: AGPL-3.0-or-later
"""The console's fast tier: the Flask app built by `create_app(test_config)` in a temporary
directory, without the running appliance (the pattern of Flask's own tutorial, flaskr).

No service is started. Synapse, clamd, the content scanner and the SMTP relay are given one
loopback port that is bound but never listened on, so anything a view sends them is refused at
once; these tests exercise what the console decides by itself: login, CSRF, lockout, sessions,
forms and exports. The `console` fixture of tests/conftest.py (the first operator, logged in)
works here too, on this `app`.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from pathlib import Path

import jinja2
import pytest

from admin_console import create_app

FAST_HASH_METHOD = "pbkdf2:sha256:1000"
MEMORY_FILESYSTEM = Path("/dev/shm")


class CompiledTemplates(jinja2.BytecodeCache):
    """Templates compiled once for the whole run instead of once per app (each test builds its
    own app); Jinja checks each entry against the template's source."""

    def __init__(self) -> None:
        self.compiled: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        if bucket.key in self.compiled:
            bucket.bytecode_from_string(self.compiled[bucket.key])

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self.compiled[bucket.key] = bucket.bytecode_to_string()


COMPILED_TEMPLATES = CompiledTemplates()


@pytest.fixture
def nowhere():
    """A loopback port bound but not listening: a connection to it is refused, and no other
    process can start listening there while the test runs."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def database_dir(tmp_path):
    """Where the console's database goes: in memory when the machine has /dev/shm, since each
    commit's fsync on a busy disk would cost more than the whole test."""
    if not MEMORY_FILESYSTEM.is_dir():
        yield tmp_path
        return
    directory = Path(tempfile.mkdtemp(prefix="console-fast-", dir=MEMORY_FILESYSTEM))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def app(tmp_path, database_dir, nowhere):
    token_file = tmp_path / "service-token"
    token_file.write_text("syt_fast_tier_token_never_sent_anywhere")
    token_file.chmod(0o600)
    app = create_app(
        {
            "TESTING": True,
            "WTF_CSRF_ENABLED": True,
            "MODE": "evaluation",
            "SERVER_NAME_MATRIX": "fast.test",
            "PUBLIC_BASEURL": f"http://127.0.0.1:{nowhere}/",
            "MAIL_FROM": "Appliance <noreply@fast.test>",
            "SYNAPSE_URL": f"http://127.0.0.1:{nowhere}",
            "SERVICE_TOKEN_FILE": str(token_file),
            "SYNAPSE_TIMEOUT_SECONDS": 2,
            "SECRET_KEY": "fast-tier-secret-key",
            "DATABASE": str(database_dir / "console.sqlite3"),
            "FIRST_OPERATOR_FILE": str(tmp_path / "console-admin.json"),
            "STATE_DIR": str(tmp_path),
            "CLAMD_HOST": "127.0.0.1",
            "CLAMD_PORT": nowhere,
            "CLAMAV_SIGNATURES": "evaluation",
            "CONTENT_SCANNER_URL": f"http://127.0.0.1:{nowhere}",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": nowhere,
            "SESSION_COOKIE_SECURE": False,
            "SESSION_TIMEOUT_MINUTES": 30,
            # Cheap hashes: the production default (scrypt) is checked in test_passwords_fast.py.
            "PASSWORD_HASH_METHOD": FAST_HASH_METHOD,
        }
    )
    app.jinja_env.bytecode_cache = COMPILED_TEMPLATES
    return app
