# SPDX-License-Identifier: AGPL-3.0-or-later
"""Helpers shared by tests and benchmarks: free ports, evaluation settings, the mail sink reader.

Kept out of conftest.py so that benchmarks and nested test folders can import them by a unique
module name.
"""

from __future__ import annotations

import mailbox
import socket
import time
from pathlib import Path

from appliance.config.settings import Settings, parse_settings

TEST_DOMAINS = ["ac-paris.fr", "*.gouv.fr"]


# Ports handed out in this test process: the kernel may give a just-closed port again, and two
# services of one appliance on the same port are refused (or would fight over it).
_HANDED_OUT: set[tuple[str, int]] = set()


def free_port(address: str = "127.0.0.1") -> int:
    """A port free now on this loopback address and not handed out before by this process."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind((address, 0))
            port = probe.getsockname()[1]
        if (address, port) not in _HANDED_OUT:
            _HANDED_OUT.add((address, port))
            return port
    raise RuntimeError("no fresh free loopback port in 100 tries")


def evaluation_settings(state_dir: Path, **overrides) -> Settings:
    """Settings for an evaluation appliance on free loopback ports under state_dir."""
    synapse_port = free_port()
    data = {
        "server_name": "test.appliance.localhost",
        "public_baseurl": f"http://127.0.0.1:{synapse_port}/",
        "synapse": {"listen": {"port": synapse_port}},
        "console": {"listen": {"port": free_port()}},
        "content_scanner": {"listen": {"port": free_port()}},
        "clamav": {"listen": {"port": free_port()}},
        "mail": {"smtp_port": free_port(), "notif_from": "Test <noreply@test.appliance.localhost>"},
        "registration": {"allowed_domains": TEST_DOMAINS},
        "paths": {"state_dir": str(state_dir)},
        **overrides,
    }
    return parse_settings(data, "test settings")


class MailSink:
    """Reads what the SMTP sink stored in its Maildir."""

    def __init__(self, directory: Path):
        self.directory = directory

    def messages(self) -> list:
        return list(mailbox.Maildir(self.directory, create=False))

    def wait_for(self, recipient: str, timeout: float = 15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.messages():
                if recipient in (message["To"] or ""):
                    return message
            time.sleep(0.1)
        raise AssertionError(f"no mail to {recipient} reached the sink in {timeout} s")
