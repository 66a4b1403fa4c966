# SPDX-License-Identifier: AGPL-3.0-or-later
"""The restore drill: an evaluation appliance of its own, populated the way people use it (agents
registered through the mail flow, rooms, messages, media, a quarantined file, an allowed domain
and an operator added through the console, so also audit entries), backed up with `appliance
backup`, stopped, its state directory wiped, restored with `appliance restore`, started again:
everything is found again, media byte for byte; Synapse's one-time keys are gone (its backup
documentation). Around it, what an operator gets wrong: a restore over a running appliance or
over existing state, a passphrase others can read, a wrong passphrase, backups inside the state
directory. The commands run as subprocesses, as a sysadmin runs them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests
import yaml
from console_helpers import csrf_token
from harness import evaluation_settings, free_port
from matrix_helpers import Person, _path_part, client_for, wait_for_allowlist
from matrix_media_helpers import EICAR

from appliance.backup import snapshot
from appliance.backup.restic import Repository
from appliance.backup.runner import (
    NOTHING_TO_BACK_UP,
    PASSPHRASE_OPEN,
    REFUSED_NOT_EMPTY,
    REFUSED_OTHER_SERVER,
    REFUSED_PG_NOT_EMPTY,
    REFUSED_RUNNING,
    STAGING,
)
from appliance.config.layout import Layout
from appliance.config.settings import SettingsError, parse_settings
from appliance.evaluation.lifecycle import EvaluationAppliance
from appliance.synapse_module.admin_api.domains import DOMAINS_PATH
from appliance.synapse_module.admin_api.quarantine import QUARANTINE_PATH

APPLIANCE = [sys.executable, "-m", "appliance.cli"]
TIMEOUT = 30
OPERATOR = "drill.operator"
OPERATOR_PASSWORD = "Drill-Operator-Passw0rd-42"
DOMAIN = "restore-drill.fr"
ONE_TIME_KEY = {"curve25519:AAAAAQ": "dGhpcyBpcyBub3QgYSByZWFsIGtleSBidXQgaXQgd2lsbCBkbw"}


def run_cli(settings_file: Path, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*APPLIANCE, "--config", str(settings_file), *arguments],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def first_line_of(template: str) -> str:
    """The fixed text of a message template, before its first placeholder."""
    return template.split("{", 1)[0]


class Console:
    """An operator's browser on the real console (gunicorn), over HTTP."""

    def __init__(self, url: str, username: str, password: str):
        self.url = url
        self.http = requests.Session()
        token = csrf_token(self.http.get(f"{url}/login", timeout=TIMEOUT).text)
        response = self.http.post(
            f"{url}/login",
            data={"csrf_token": token, "username": username, "password": password},
            allow_redirects=False,
            timeout=TIMEOUT,
        )
        assert response.status_code == 302, response.text
        self.token = csrf_token(self.http.get(f"{url}/audit/", timeout=TIMEOUT).text)

    def get(self, path: str) -> str:
        response = self.http.get(self.url + path, timeout=TIMEOUT)
        assert response.status_code == 200, (path, response.status_code)
        return response.text

    def post(self, path: str, **data) -> requests.Response:
        return self.http.post(
            self.url + path, data={"csrf_token": self.token, **data}, timeout=TIMEOUT
        )


@pytest.fixture(scope="module")
def drill(tmp_path_factory):
    """A stopped-and-started appliance of this module's own, with its settings file."""
    home = tmp_path_factory.mktemp("drill")
    settings = evaluation_settings(
        home / "var",
        backup={"repository": str(home / "backups"), "passphrase_file": "backup-passphrase"},
    )
    settings_file = home / "appliance.yaml"
    settings_file.write_text(yaml.safe_dump(settings.model_dump(mode="json", exclude_unset=True)))
    appliance = EvaluationAppliance(settings, Layout.from_settings(settings, home))
    appliance.up()
    yield home, settings_file, appliance
    EvaluationAppliance(settings, Layout.from_settings(settings, home)).down()


def _admin(appliance, method: str, path: str) -> dict:
    token = appliance.layout.service_token.read_text().strip()
    response = requests.request(
        method,
        appliance.settings.synapse.listen.url + path,
        headers={"Authorization": f"Bearer {token}"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    return response.json()


def _messages(person: Person, room_id: str) -> list[dict]:
    path = f"/_matrix/client/v3/rooms/{_path_part(room_id)}/messages?dir=b&limit=100"
    response = person.call("GET", path)
    assert response.status_code == 200, response.text
    return response.json()["chunk"]


def _populate(appliance) -> dict:
    client = client_for(appliance)
    wait_for_allowlist(client)
    alice = Person.register(client, "alice.martin@ac-paris.fr")
    bob = Person.register(client, "bob.durand@ac-paris.fr")
    private = alice.new_room(name="Drill private", invite=[bob.user_id])
    assert bob.join(private).status_code == 200
    forum = alice.new_room(name="Drill forum", preset="public_chat", visibility="public")
    sent = {}
    for room_id, person, text in [
        (private, alice, "first message before the backup"),
        (private, bob, "a reply before the backup"),
        (forum, alice, "a forum post before the backup"),
    ]:
        response = person.send_text(room_id, text)
        assert response.status_code == 200, response.text
        sent[response.json()["event_id"]] = (room_id, text)
    url = appliance.settings.synapse.listen.url
    media = secrets.token_bytes(300_000)
    uploaded = requests.post(
        f"{url}/_matrix/media/v3/upload",
        data=media,
        headers={"Authorization": f"Bearer {alice.token}", "Content-Type": "image/png"},
        timeout=TIMEOUT,
    )
    assert uploaded.status_code == 200, uploaded.text
    refused = requests.post(
        f"{url}/_matrix/media/v3/upload",
        data=EICAR,
        headers={"Authorization": f"Bearer {bob.token}", "Content-Type": "text/plain"},
        timeout=TIMEOUT,
    )
    assert refused.status_code == 403, refused.text
    keys = alice.call("POST", "/_matrix/client/v3/keys/upload", {"one_time_keys": ONE_TIME_KEY})
    assert keys.json()["one_time_key_counts"].get("curve25519") == 1, keys.text
    operator = _first_operator(appliance)
    console = Console(appliance.settings.console.listen.url, *operator)
    assert DOMAIN in console.post("/domains/", entries=DOMAIN).text
    added = console.post(
        "/operators/", username=OPERATOR, password=OPERATOR_PASSWORD, confirm=OPERATOR_PASSWORD
    )
    assert added.status_code == 200 and OPERATOR in added.text, added.status_code
    return {
        "alice": alice,
        "bob": bob,
        "rooms": {room_id: alice.state_events(room_id) for room_id in (private, forum)},
        "sent": sent,
        "media": (uploaded.json()["content_uri"], media),
        "quarantine": _admin(appliance, "GET", QUARANTINE_PATH)["records"],
        "domains": _admin(appliance, "GET", DOMAINS_PATH)["domains"],
        "audit": _audit_rows(console),
    }


def _first_operator(appliance) -> tuple[str, str]:
    credentials = json.loads(appliance.layout.console_first_operator.read_text())
    return credentials["username"], credentials["password"]


def _audit_rows(console: Console) -> list[str]:
    page = console.get("/audit/")
    return sorted(set(re.findall(r"(domain\.add|operator\.add)", page)))


def _services_up(appliance) -> list[str]:
    return [name for name, pid, check in appliance.status() if pid and check.ok]


def test_a_populated_appliance_comes_back_whole_from_its_backup(drill):
    home, settings_file, appliance = drill
    before = _populate(appliance)
    assert len(before["quarantine"]) == 1
    assert before["quarantine"][0]["sha256"] == hashlib.sha256(EICAR).hexdigest()
    assert DOMAIN in [entry["entry"] for entry in before["domains"]]
    assert before["audit"] == ["domain.add", "operator.add"]

    began = time.monotonic()
    backed_up = run_cli(settings_file, "backup")
    backup_seconds = time.monotonic() - began
    assert backed_up.returncode == 0, backed_up.stderr
    assert "backup " in backed_up.stdout and "1 backups kept" in backed_up.stdout
    passphrase = home / "backup-passphrase"
    assert passphrase.stat().st_mode & 0o777 == 0o600
    assert not (appliance.layout.state_dir / STAGING).exists()

    # Over a running appliance: refused, naming the services, and nothing touched.
    refused = run_cli(settings_file, "restore")
    assert refused.returncode == 5
    assert first_line_of(REFUSED_RUNNING) in refused.stderr
    for name in ("synapse", "console", "content-scanner", "clamd", "mail-sink"):
        assert name in refused.stderr
    assert sorted(_services_up(appliance)) == sorted(s.name for s in appliance.specs())

    appliance.down()
    # Over existing state (stopped): refused, the state is never overwritten.
    refused = run_cli(settings_file, "restore")
    assert refused.returncode == 5
    assert first_line_of(REFUSED_NOT_EMPTY) in refused.stderr
    assert (appliance.layout.synapse_dir / "homeserver.db").exists()

    shutil.rmtree(appliance.layout.state_dir)
    began = time.monotonic()
    restored = run_cli(settings_file, "restore")
    restore_seconds = time.monotonic() - began
    assert restored.returncode == 0, restored.stderr
    state = appliance.layout.state_dir
    assert (state / snapshot.SETTINGS_COPY).read_text() == settings_file.read_text()
    assert state.stat().st_mode & 0o777 == 0o700
    assert not list(state.parent.glob(".*restoring*"))
    assert not [p for p in state.rglob("*") if p.name.endswith(("-wal", "-shm"))]

    again = EvaluationAppliance(appliance.settings, appliance.layout)
    again.up()
    print(f"\nbackup {backup_seconds:.1f} s, restore {restore_seconds:.1f} s")
    _check_everything_is_back(again, before)
    assert "1 one-time keys cleared" in restored.stdout


def _check_everything_is_back(appliance, before: dict) -> None:
    alice, bob = before["alice"], before["bob"]
    client = client_for(appliance)
    # The same people, with the same tokens (sessions survive) and passwords.
    assert client.whoami(alice.token).json()["user_id"] == alice.user_id
    login = client.login_with_email("bob.durand@ac-paris.fr")
    assert login.status_code == 200 and login.json()["user_id"] == bob.user_id
    # Every room with exactly its state, event by event.
    for room_id, events in before["rooms"].items():
        assert sorted(e["event_id"] for e in alice.state_events(room_id)) == sorted(
            e["event_id"] for e in events
        )
    # Every message, by event id and text, readable by a member.
    for event_id, (room_id, text) in before["sent"].items():
        found = {e["event_id"]: e for e in _messages(alice, room_id)}
        assert found[event_id]["content"]["body"] == text
    # The media, byte for byte.
    mxc, data = before["media"]
    server_name, media_id = mxc.removeprefix("mxc://").split("/")
    download = requests.get(
        f"{appliance.settings.synapse.listen.url}/_matrix/client/v1/media/download/"
        f"{server_name}/{media_id}",
        headers={"Authorization": f"Bearer {bob.token}"},
        timeout=TIMEOUT,
    )
    assert download.status_code == 200 and download.content == data
    # The quarantine record, the allowed domain.
    assert _admin(appliance, "GET", QUARANTINE_PATH)["records"] == before["quarantine"]
    assert _admin(appliance, "GET", DOMAINS_PATH)["domains"] == before["domains"]
    # Synapse's caveat: the one-time keys of the older database are gone.
    keys = alice.call("POST", "/_matrix/client/v3/keys/upload", {})
    assert keys.json()["one_time_key_counts"].get("curve25519", 0) == 0, keys.text
    # The operator added through the console logs in; the audit log kept what was done.
    console = Console(appliance.settings.console.listen.url, OPERATOR, OPERATOR_PASSWORD)
    assert _audit_rows(console) == before["audit"]
    # And the restored appliance works: a new message lands in a restored room.
    room_id = next(iter(before["rooms"]))
    assert alice.send_text(room_id, "after the restore").status_code == 200


def test_a_backup_taken_while_messages_and_uploads_flow_is_consistent(drill, tmp_path):
    """Every media file the backed-up database names is in the backup, whole, and the database
    copy passes SQLite's integrity check, though clients wrote throughout the run."""
    home, settings_file, appliance = drill
    appliance.up()  # after the drill above, or alone
    client = client_for(appliance)
    wait_for_allowlist(client)
    person = Person.register(client, f"flux.{secrets.token_hex(3)}@ac-paris.fr")
    room_id = person.new_room(name="Flux")
    url = appliance.settings.synapse.listen.url
    stop, statuses = threading.Event(), []

    def traffic() -> None:
        while not stop.is_set():
            statuses.append(person.send_text(room_id, secrets.token_hex(8)).status_code)
            upload = requests.post(
                f"{url}/_matrix/media/v3/upload",
                data=secrets.token_bytes(50_000),
                headers={"Authorization": f"Bearer {person.token}"},
                timeout=TIMEOUT,
            )
            statuses.append(upload.status_code)

    writer = threading.Thread(target=traffic)
    writer.start()
    try:
        deadline = time.monotonic() + 60
        while len(statuses) < 10:  # the traffic is flowing before the backup starts
            assert time.monotonic() < deadline, statuses
            time.sleep(0.05)
        before = len(statuses)
        backed_up = run_cli(settings_file, "backup")
        during = len(statuses) - before
    finally:
        stop.set()
        writer.join()
    assert backed_up.returncode == 0, backed_up.stderr
    assert during > 0  # clients wrote while the backup ran (it takes seconds, a write ms)
    assert set(statuses) == {200}

    repository = Repository(str(home / "backups"), home / "backup-passphrase")
    latest = repository.snapshots()[-1]
    repository.restore(latest["id"], tmp_path)
    root = tmp_path / latest["paths"][0].lstrip("/")
    assert not [p for p in root.rglob("*") if p.name.endswith(("-wal", "-shm", "-journal"))]
    database = sqlite3.connect(root / "synapse" / "homeserver.db")
    try:
        assert database.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        media = database.execute(
            "SELECT media_id, media_length FROM local_media_repository "
            "WHERE quarantined_by IS NULL AND media_length IS NOT NULL"
        ).fetchall()
    finally:
        database.close()
    content = root / "synapse" / "media_store" / "local_content"
    assert len(media) > 1
    for media_id, length in media:
        path = content / media_id[:2] / media_id[2:4] / media_id[4:]
        assert path.stat().st_size == length, media_id


def test_a_failed_backup_is_reported_and_records_nothing(drill):
    home, settings_file, appliance = drill
    passphrase = home / "backup-passphrase"
    _ensure_a_backup(home, settings_file)
    repository = Repository(str(home / "backups"), passphrase)
    count = len(repository.snapshots())
    saved = passphrase.read_text()
    passphrase.write_text("not the passphrase of this repository\n")
    try:
        failed = run_cli(settings_file, "backup")
    finally:
        passphrase.write_text(saved)
    assert failed.returncode == 5
    assert "no backup was recorded: restic" in failed.stderr
    assert len(repository.snapshots()) == count
    assert not (appliance.layout.state_dir / STAGING).exists()


def _ensure_a_backup(home: Path, settings_file: Path) -> None:
    """The tests below also run alone: make the first backup if the drill did not."""
    passphrase = home / "backup-passphrase"
    if not passphrase.exists() or not Repository(str(home / "backups"), passphrase).snapshots():
        backed_up = run_cli(settings_file, "backup")
        assert backed_up.returncode == 0, backed_up.stderr


def test_a_backup_of_another_server_is_refused_and_nothing_is_put_in_place(drill, tmp_path):
    home, settings_file, appliance = drill
    _ensure_a_backup(home, settings_file)
    data = yaml.safe_load(settings_file.read_text())
    data["server_name"] = "other.appliance.localhost"
    data["paths"]["state_dir"] = str(tmp_path / "var")
    data["backup"] = {
        "repository": str(home / "backups"),
        "passphrase_file": str(home / "backup-passphrase"),
    }
    # Its own ports: the drill's appliance may be running.
    fresh = evaluation_settings(tmp_path / "var").model_dump(mode="json", exclude_unset=True)
    for key in ("public_baseurl", "synapse", "console", "content_scanner", "clamav", "mail"):
        data[key] = fresh[key]
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(data))
    refused = run_cli(other, "restore")
    assert refused.returncode == 5
    expected = REFUSED_OTHER_SERVER.format(
        backup=appliance.settings.server_name, settings="other.appliance.localhost"
    )
    assert expected in refused.stderr
    assert sorted(os.listdir(tmp_path)) == ["other.yaml"]  # no var/, no leftover


def test_a_passphrase_others_can_read_is_refused(drill):
    home, settings_file, _ = drill
    passphrase = home / "backup-passphrase"
    _ensure_a_backup(home, settings_file)
    passphrase.chmod(0o644)
    try:
        refused = run_cli(settings_file, "backup")
    finally:
        passphrase.chmod(0o600)
    assert refused.returncode == 2
    assert PASSPHRASE_OPEN.split("{")[0] in refused.stderr
    assert "backup.passphrase_file" in refused.stderr


def test_backups_inside_the_state_directory_are_refused_with_the_key(tmp_path):
    settings = evaluation_settings(
        tmp_path / "var", backup={"repository": str(tmp_path / "var" / "backups")}
    )
    settings_file = tmp_path / "appliance.yaml"
    settings_file.write_text(yaml.safe_dump(settings.model_dump(mode="json", exclude_unset=True)))
    refused = run_cli(settings_file, "backup")
    assert refused.returncode == 2
    assert refused.stderr.startswith(f"appliance backup: {settings_file} is not valid:")
    assert "backup.repository" in refused.stderr and "inside paths.state_dir" in refused.stderr
    assert not (tmp_path / "backup-passphrase").exists()


def test_a_backup_where_no_appliance_ever_ran_is_refused_and_creates_nothing(tmp_path):
    settings = evaluation_settings(tmp_path / "var")
    settings_file = tmp_path / "appliance.yaml"
    settings_file.write_text(yaml.safe_dump(settings.model_dump(mode="json", exclude_unset=True)))
    refused = run_cli(settings_file, "backup")
    assert refused.returncode == 5
    assert first_line_of(NOTHING_TO_BACK_UP) in refused.stderr
    assert sorted(os.listdir(tmp_path)) == ["appliance.yaml"]


def test_a_retention_that_keeps_nothing_is_refused_with_the_key():
    with pytest.raises(SettingsError) as error:
        parse_settings({"backup": {"keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0}}, "t")
    assert error.value.problems[0].startswith("backup.keep_daily:")


def test_media_deleted_during_the_snapshot_never_aborts_it(tmp_path):
    """A purge or quarantine deleting files while the snapshot walks the media store."""
    settings = evaluation_settings(tmp_path / "var")
    layout = Layout.from_settings(settings, tmp_path)
    content = layout.media_store / "local_content" / "ab" / "cd"
    content.mkdir(parents=True)
    files = []
    for index in range(3000):
        path = content / f"media{index:05d}"
        path.write_bytes(index.to_bytes(4, "big"))
        files.append(path)
    deleter = threading.Thread(target=lambda: [os.unlink(p) for p in files[::2]])
    deleter.start()
    taken = snapshot.take(settings, layout, layout.state_dir / STAGING, None)
    deleter.join()
    linked = sorted((layout.state_dir / STAGING / "synapse/media_store/local_content").rglob("m*"))
    assert taken.media_files == len(linked)
    assert taken.media_files + len(taken.media_skipped) <= len(files)
    for path in linked:  # what was taken is whole
        index = int(path.name.removeprefix("media"))
        assert path.read_bytes() == index.to_bytes(4, "big")


# --- PostgreSQL -----------------------------------------------------------------------------
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(*argv: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL cluster of this module's own (Debian's 15), on a socket in a temp dir,
    with an empty database `synapse` owned by the role `synapse` (C collation)."""
    if not (PG_BIN / "initdb").exists():
        pytest.fail("PostgreSQL 15 is not installed: apt-get install -y postgresql")
    base = Path(tempfile.mkdtemp(prefix="appliance-pg-", dir="/tmp"))
    base.chmod(0o755)  # the postgres user must reach its data directory and socket
    shutil.chown(base, "postgres", "postgres")
    data, sockets, port = base / "data", base / "sockets", free_port()
    sockets.mkdir()
    shutil.chown(sockets, "postgres", "postgres")
    _as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres")
    options = f"-k {sockets} -p {port} -c listen_addresses=''"
    _as_postgres(
        str(PG_BIN / "pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(base / "log"),
        "-w",
        "-o",
        options,
        "start",
    )
    cluster = {"host": str(sockets), "port": port}
    try:
        _psql(cluster, "CREATE ROLE synapse LOGIN")
        _create_empty_database(cluster)
        yield cluster
    finally:
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "stop")
        shutil.rmtree(base, ignore_errors=True)


def _psql(cluster: dict, sql: str, database: str = "postgres") -> str:
    return _as_postgres(
        "psql",
        "-h",
        cluster["host"],
        "-p",
        str(cluster["port"]),
        "-d",
        database,
        "--tuples-only",
        "--no-align",
        "-c",
        sql,
    ).stdout.strip()


def _create_empty_database(cluster: dict) -> None:
    _psql(cluster, "DROP DATABASE IF EXISTS synapse")
    _psql(
        cluster,
        "CREATE DATABASE synapse OWNER synapse ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' "
        "TEMPLATE template0",
    )


def test_the_drill_on_postgresql(postgres, tmp_path):
    home = tmp_path
    data = evaluation_settings(home / "var").model_dump(mode="json", exclude_unset=True)
    data["synapse"]["database"] = {"engine": "postgresql", "name": "synapse", **postgres}
    data["backup"] = {"repository": str(home / "backups")}
    settings = parse_settings(data, "PostgreSQL drill")
    settings_file = home / "appliance.yaml"
    settings_file.write_text(yaml.safe_dump(data))
    appliance = EvaluationAppliance(settings, Layout.from_settings(settings, home))
    appliance.up()
    try:
        client = client_for(appliance)
        wait_for_allowlist(client)
        alice = Person.register(client, "alice.pg@ac-paris.fr")
        room_id = alice.new_room(name="Sur PostgreSQL")
        sent = alice.send_text(room_id, "stored in PostgreSQL")
        assert sent.status_code == 200, sent.text
        keys = alice.call("POST", "/_matrix/client/v3/keys/upload", {"one_time_keys": ONE_TIME_KEY})
        assert keys.json()["one_time_key_counts"].get("curve25519") == 1, keys.text
        backed_up = run_cli(settings_file, "backup")
        assert backed_up.returncode == 0, backed_up.stderr
        assert "synapse/synapse.pgdump" in backed_up.stdout
    finally:
        appliance.down()
    shutil.rmtree(appliance.layout.state_dir)

    # Synapse's documentation: never restore over a database that has tables.
    refused = run_cli(settings_file, "restore")
    assert refused.returncode == 5
    assert REFUSED_PG_NOT_EMPTY.format(name="synapse") in refused.stderr
    assert not appliance.layout.state_dir.exists()

    _create_empty_database(postgres)
    restored = run_cli(settings_file, "restore")
    assert restored.returncode == 0, restored.stderr
    assert _psql(postgres, "SELECT count(*) FROM e2e_one_time_keys_json", "synapse") == "0"
    owners = _psql(
        postgres, "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'", "synapse"
    )
    assert owners == "synapse"
    again = EvaluationAppliance(settings, appliance.layout)
    again.up()
    try:
        assert client_for(again).whoami(alice.token).json()["user_id"] == alice.user_id
        bodies = [e["content"].get("body") for e in _messages(alice, room_id)]
        assert "stored in PostgreSQL" in bodies
        keys = alice.call("POST", "/_matrix/client/v3/keys/upload", {})
        assert keys.json()["one_time_key_counts"].get("curve25519", 0) == 0, keys.text
    finally:
        again.down()
