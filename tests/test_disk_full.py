# SPDX-License-Identifier: AGPL-3.0-or-later
"""A full disk is survivable: an appliance whose whole state (var/) lives on a small tmpfs the
test mounts, filled to the last byte. Operators still log in to the console and see the disk
red; `appliance status` says the disk is full; a message sent meanwhile is either refused
with a Matrix error or kept; once the space is freed, everything works again, with the same
processes (no restart), and no acknowledged message is lost."""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml
from console_helpers import csrf_token
from harness import evaluation_settings
from matrix_helpers import Person, client_for
from matrix_media_helpers import wait_until

from appliance.config.layout import Layout
from appliance.evaluation.lifecycle import EvaluationAppliance
from appliance.evaluation.supervisor import running_process
from appliance.operations.disk_reserve import FILE_NAME

# Big enough that the console's 16 MiB reserve, once given back, leaves the disk above 90 %.
DISK_SIZE = "400m"
CHUNK = 1 << 20
TIMEOUT = 60


@pytest.fixture(scope="module")
def small_disk(tmp_path_factory) -> Path:
    if os.geteuid() != 0:
        pytest.fail("mounting the test's tmpfs needs root: run the tests as root")
    mount_point = tmp_path_factory.mktemp("small-disk")
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE},mode=0700", "tmpfs", str(mount_point)],
        check=True,
    )
    yield mount_point
    subprocess.run(["umount", "--lazy", str(mount_point)], check=False)


@pytest.fixture(scope="module")
def on_small_disk(small_disk, tmp_path_factory):
    """An appliance whose var/ is the small disk, and its settings file for the CLI."""
    settings = evaluation_settings(small_disk / "var")
    config = tmp_path_factory.mktemp("disk-config") / "appliance.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    running = EvaluationAppliance(settings, Layout.from_settings(settings, small_disk / "var"))
    running.up()
    yield running, config
    running.down()


def fill(disk: Path) -> Path:
    """Write to the disk until it refuses another byte; return the file holding the space."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (CHUNK, 4096, 1):  # then the last partial chunk
            for _ in range(10_000):  # bounded: far more than the disk holds
                try:
                    os.write(fd, b"\0" * size)
                except OSError as error:
                    assert error.errno == errno.ENOSPC, error
                    break
    finally:
        os.close(fd)
    return filler


def console_login(console_url: str, credentials: dict) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{console_url}/login", timeout=TIMEOUT)
    assert page.status_code == 200, page.text
    form = {"csrf_token": csrf_token(page.text), **credentials}
    answer = session.post(f"{console_url}/login", data=form, timeout=TIMEOUT, allow_redirects=False)
    assert answer.status_code == 302 and "/login" not in answer.headers["Location"], answer.text
    return session


def disk_row(page: str) -> str:
    return re.search(r'<tr class="(\w+)" data-check="disk">(.*?)</tr>', page, re.S).group(0)


def send(person: Person, room_id: str, text: str, txn: str) -> requests.Response:
    path = f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{txn}"
    return person.call("PUT", path, {"msgtype": "m.text", "body": text})


def bodies(person: Person, room_id: str) -> list[str]:
    path = f"/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=100"
    response = person.call("GET", path)
    assert response.status_code == 200, response.text
    return [
        e["content"].get("body") for e in response.json()["chunk"] if e["type"] == "m.room.message"
    ]


def status(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", "--config", str(config), "status"],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_full_disk_keeps_the_console_open_and_loses_no_acknowledged_message(
    small_disk, on_small_disk
):
    appliance, config = on_small_disk
    layout = appliance.layout
    console_url = appliance.settings.console.listen.url
    credentials = json.loads(layout.console_first_operator.read_text())
    reserve = layout.state_dir / FILE_NAME
    pids = {spec.name: running_process(spec).pid for spec in appliance.specs()}

    agent = Person.register(client_for(appliance), f"disk-{secrets.token_hex(3)}@ac-paris.fr")
    room = agent.new_room(preset="private_chat")
    assert send(agent, room, "before", "txn-before").status_code == 200
    console_login(console_url, credentials)  # the console has made its reserve
    assert reserve.exists()

    filler = fill(small_disk)
    during = send(agent, room, "during", "txn-during")
    if during.status_code != 200:  # refused, with a Matrix error a client can show
        assert during.json()["errcode"].startswith("M_") and during.json()["error"], during.text

    # Operators log in and see why.
    session = console_login(console_url, credentials)
    assert not reserve.exists()  # given back to let the login write
    health = session.get(f"{console_url}/health/", timeout=TIMEOUT)
    assert health.status_code == 200
    assert disk_row(health.text).startswith('<tr class="bad"') and "almost full" in health.text
    full = status(config)
    assert full.returncode == 1 and re.search(r"^disk\s+FULL\s.*almost full", full.stdout, re.M), (
        full.stdout
    )

    filler.unlink()
    # Everything works again with the same processes: no restart.
    wait_until(lambda: send(agent, room, "after", "txn-after").status_code == 200, "a send")
    if during.status_code != 200:  # the client retries the refused message, same transaction
        assert send(agent, room, "during", "txn-during").status_code == 200
    assert {"before", "during", "after"} <= set(bodies(agent, room))
    session = console_login(console_url, credentials)
    health = session.get(f"{console_url}/health/", timeout=TIMEOUT)
    assert disk_row(health.text).startswith('<tr class="ok"')
    assert reserve.exists()  # made again once there was room
    assert status(config).returncode == 0
    assert {spec.name: running_process(spec).pid for spec in appliance.specs()} == pids
