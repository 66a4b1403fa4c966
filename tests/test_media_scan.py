# SPDX-License-Identifier: AGPL-3.0-or-later
"""Upload-time scanning in Synapse, against the real Synapse and the real clamd."""

from __future__ import annotations

import asyncio
import hashlib
import io
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from matrix_media_helpers import (
    EICAR,
    RELOAD_BOUND_SECONDS,
    TIMEOUT,
    User,
    added_signature,
    clamd_stopped,
    download,
    extra_signature,
    register_user,
    unique_bytes,
    upload,
    upload_ok,
    wait_until,
    zipped,
)
from PIL import Image
from synapse.media._base import FileInfo, ThumbnailInfo
from synapse.module_api.errors import ConfigError, SynapseError

from appliance.antivirus.clamd import ClamdClient
from appliance.antivirus.signatures import CLAMD_SELF_CHECK_SECONDS, SignatureFiles, SignatureWatch
from appliance.operations import health
from appliance.synapse_module.config import parse_module_config
from appliance.synapse_module.media.scan import INFECTED_MESSAGE, NOT_SCANNED_MESSAGE, media_kind
from appliance.synapse_module.media.scan_store import ScanStore, TablesNotReady
from appliance.synapse_module.module_tables import ModuleTables

QUARANTINE = "/_synapse/client/appliance/v1/quarantine"
EICAR_SIGNATURE = "Appliance.Evaluation.EICAR-Test-File.UNOFFICIAL"


@pytest.fixture(scope="module")
def uploader(appliance, synapse_url) -> User:
    secret = appliance.layout.secret("registration_shared_secret").read_text().strip()
    return register_user(synapse_url, secret, "uploader")


@pytest.fixture
def caching(synapse_url, uploader, appliance) -> None:
    """The module stores verdicts: clamd has certainly loaded the current signatures (for a few
    seconds after they change, it does not; each upload moves that along)."""

    def probe_is_cached() -> bool:
        data = unique_bytes(64)
        upload_ok(synapse_url, uploader, data)
        return bool(verdict_rows(appliance, data))

    wait_until(probe_is_cached, "verdict caching in the module", RELOAD_BOUND_SECONDS)


def quarantine(synapse_url: str, token: str | None, **params) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(
        f"{synapse_url}{QUARANTINE}", params=params, headers=headers, timeout=TIMEOUT
    )


def records_for(synapse_url: str, admin_token: str, data: bytes) -> list[dict]:
    sha256 = hashlib.sha256(data).hexdigest()
    listing = quarantine(synapse_url, admin_token, limit=1000).json()
    return [record for record in listing["records"] if record["sha256"] == sha256]


def verdict_rows(appliance, data: bytes) -> list[tuple]:
    """The module's verdicts for these bytes, read from Synapse's database."""
    path = appliance.layout.synapse_dir / "homeserver.db"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return db.execute(
            "SELECT verdict, signature, scanned_ts FROM appliance_media_verdicts WHERE sha256 = ?",
            (hashlib.sha256(data).hexdigest(),),
        ).fetchall()


def assert_infected(response: requests.Response, signature: str = EICAR_SIGNATURE) -> None:
    assert response.status_code == 403, response.text
    error = INFECTED_MESSAGE.format(signature=signature)
    assert response.json() == {"errcode": "M_FORBIDDEN", "error": error}


def assert_not_scanned(response: requests.Response) -> None:
    # Not "infected": the client may try again once the antivirus is back.
    assert response.status_code == 503, response.text
    assert response.json() == {"errcode": "M_UNKNOWN", "error": NOT_SCANNED_MESSAGE}


def png(size: int = 96) -> bytes:
    image = Image.new("RGB", (size, size), color=(12, 34, 56))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# Pure logic ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "file_info, kind",
    [
        (FileInfo(server_name=None, file_id="a"), "upload"),
        (FileInfo(server_name="remote.example", file_id="a"), "remote"),
        (FileInfo(server_name=None, file_id="a", url_cache=True), "url_preview"),
        (
            FileInfo(None, "a", thumbnail=ThumbnailInfo(32, 32, "scale", "image/png", 100)),
            "thumbnail",
        ),
    ],
)
def test_every_kind_of_stored_file_is_named(file_info, kind):
    assert media_kind(file_info) == kind


def test_the_signature_files_fingerprint_follows_their_content(tmp_path):
    files = SignatureFiles(tmp_path)
    empty = files.fingerprint().files_hash
    (tmp_path / "custom.ndb").write_text("Sig.One:0:*:6162636465\n")
    (tmp_path / "freshclam.dat").write_bytes(b"not a signature file")
    one = files.fingerprint()
    assert one.files_hash != empty and files.fingerprint().files_hash == one.files_hash
    assert one.total_bytes == len("Sig.One:0:*:6162636465\n")
    assert one.changed_at == (tmp_path / "custom.ndb").stat().st_ctime
    (tmp_path / "custom.ndb").write_text("Sig.Two:0:*:616263646566\n")
    assert files.fingerprint().files_hash not in (empty, one.files_hash)


@dataclass(frozen=True)
class CountingClamd(ClamdClient):
    """The real client, counting the RELOADs it sends."""

    reloads: list = field(default_factory=list)

    def reload(self) -> None:
        super().reload()
        self.reloads.append(time.time())


def test_verdicts_are_cached_only_once_clamd_must_have_loaded_changed_signatures(clamd, tmp_path):
    (tmp_path / "custom.ndb").write_text("Sig.One:0:*:6162636465\n")
    client = CountingClamd(clamd.host, clamd.port, clamd.timeout)
    now = [time.time()]
    watch = SignatureWatch(client, SignatureFiles(tmp_path), clock=lambda: now[0])
    bound = SignatureFiles(tmp_path).fingerprint().reload_bound_seconds + 0.01
    steps = []
    for elapsed in (0, 0, bound, 0, bound):
        now[0] += elapsed
        steps.append((watch.state().cacheable, len(client.reloads)))
    # RELOAD when the change is seen; again once a reload running then must be over; cache
    # once that second one must be over too.
    assert steps == [(False, 1), (False, 1), (False, 2), (False, 2), (True, 2)]
    (tmp_path / "custom.ndb").write_text("Sig.Two:0:*:616263646566\n")
    assert (watch.state().cacheable, len(client.reloads)) == (False, 3)


def test_signatures_older_than_clamds_own_check_are_trusted_at_once(clamd, tmp_path):
    (tmp_path / "custom.ndb").write_text("Sig.One:0:*:6162636465\n")
    client = CountingClamd(clamd.host, clamd.port, clamd.timeout)
    later = time.time() + CLAMD_SELF_CHECK_SECONDS + 60
    watch = SignatureWatch(client, SignatureFiles(tmp_path), clock=lambda: later)
    assert watch.state().cacheable and client.reloads == []


class SqliteModuleApi:
    """What ScanStore and ModuleTables ask of Synapse's ModuleApi, on a real SQLite database: a
    stand-in for Synapse's plumbing (the store or the tables are what is tested)."""

    def __init__(self, path: Path, runs_background_tasks: bool):
        self._path = path
        self._runs_background_tasks = runs_background_tasks
        self.background: list = []  # what Synapse would run in the background, not yet run

    def should_run_background_tasks(self) -> bool:
        return self._runs_background_tasks

    def run_as_background_process(self, desc: str, f, *args) -> None:
        self.background.append(f(*args))

    def delayed_background_call(self, msec: float, f, *args, desc: str | None = None) -> None:
        self.background.append(f(*args))

    async def run_db_interaction(self, desc: str, func, *args):
        with closing(sqlite3.connect(self._path)) as db:
            cursor = db.cursor()
            txn = SimpleNamespace(
                database_engine=SimpleNamespace(module=sqlite3),
                execute=lambda sql, params=(): cursor.execute(sql, params),
                fetchone=cursor.fetchone,
                fetchall=cursor.fetchall,
            )
            result = func(txn, *args)
            db.commit()
            return result

    def run_background(self) -> None:
        """Run what is scheduled now (not what that schedules in turn)."""
        scheduled, self.background = self.background, []
        for coroutine in scheduled:
            asyncio.run(coroutine)


def table_names(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as db:
        return {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


SCAN_TABLES = {"appliance_media_verdicts", "appliance_media_quarantine"}


def test_a_worker_never_creates_the_scan_tables_and_waits_for_the_main_process(tmp_path):
    database = tmp_path / "homeserver.db"
    worker_api = SqliteModuleApi(database, runs_background_tasks=False)
    worker = ScanStore(worker_api)
    worker.start()
    assert worker_api.background == []
    with pytest.raises(TablesNotReady):
        asyncio.run(worker.list_quarantine(0, 10))
    assert table_names(database) == set()
    main_api = SqliteModuleApi(database, runs_background_tasks=True)
    ScanStore(main_api).start()
    main_api.run_background()
    assert asyncio.run(worker.list_quarantine(0, 10)) == ([], 0)


def test_a_worker_says_try_again_until_all_its_module_tables_are_there(tmp_path):
    database = tmp_path / "homeserver.db"
    names = ("appliance_one", "appliance_two")
    schema = tuple(f"CREATE TABLE IF NOT EXISTS {name} (k TEXT)" for name in names)
    worker_api = SqliteModuleApi(database, runs_background_tasks=False)
    worker = ModuleTables(worker_api, "appliance_test", schema)
    worker.start()
    assert worker_api.background == []  # a worker never creates them

    def refusal() -> SynapseError:
        with pytest.raises(SynapseError) as caught:
            asyncio.run(worker.ensure(names, "try again in a moment"))
        return caught.value

    assert (refusal().code, refusal().errcode) == (503, "M_UNKNOWN")
    main_api = SqliteModuleApi(database, runs_background_tasks=True)
    ModuleTables(main_api, "appliance_test", schema[:1]).start()
    main_api.run_background()
    assert refusal().msg == "try again in a moment"  # one table of two is not enough
    ModuleTables(main_api, "appliance_test", schema).start()
    main_api.run_background()
    asyncio.run(worker.ensure(names, "try again in a moment"))
    assert table_names(database) == set(names)


def test_database_dir_must_be_a_path():
    assert parse_module_config({"clamd": {"database_dir": "/var/lib/clamav"}}).clamd.database_dir
    with pytest.raises(ConfigError) as caught:
        parse_module_config({"clamd": {"database_dir": 3}})
    assert tuple(caught.value.path) == ("clamd", "database_dir")


# Against the running appliance ---------------------------------------------------------------
def test_the_scan_tables_were_made_when_synapse_started(appliance):
    assert "module tables ready: appliance_scan" in appliance.layout.logfile("synapse").read_text()


def test_clean_file_is_stored_and_served(synapse_url, uploader, appliance, caching):
    data = unique_bytes()
    mxc = upload_ok(synapse_url, uploader, data)
    assert download(synapse_url, uploader, mxc).content == data
    assert [row[:2] for row in verdict_rows(appliance, data)] == [("clean", None)]


def test_eicar_is_refused_and_quarantined_with_its_uploader(synapse_url, uploader, admin_token):
    before = int(time.time() * 1000)
    assert_infected(upload(synapse_url, uploader, EICAR, "text/plain"))
    mine = [
        r for r in records_for(synapse_url, admin_token, EICAR) if r["user_id"] == uploader.user_id
    ]
    assert len(mine) == 1
    assert mine[0]["kind"] == "upload"
    assert mine[0]["media"].startswith(f"mxc://{uploader.user_id.split(':')[1]}/")
    assert mine[0]["signature"] == EICAR_SIGNATURE
    assert mine[0]["detected_ts"] >= before


def test_eicar_inside_a_zip_is_refused(synapse_url, uploader, admin_token):
    archive = zipped(f"invoice-{time.time_ns()}.com", EICAR)
    assert_infected(upload(synapse_url, uploader, archive, "application/zip"))
    [record] = records_for(synapse_url, admin_token, archive)
    assert record["user_id"] == uploader.user_id
    assert record["signature"] == EICAR_SIGNATURE


def test_thumbnails_are_scanned_before_they_are_served(synapse_url, uploader, appliance, caching):
    mxc = upload_ok(synapse_url, uploader, png(), content_type="image/png")
    server_name, media_id = mxc.removeprefix("mxc://").split("/")
    response = requests.get(
        f"{synapse_url}/_matrix/client/v1/media/thumbnail/{server_name}/{media_id}",
        params={"width": 32, "height": 32, "method": "scale"},
        headers=uploader.headers,
        timeout=TIMEOUT,
    )
    assert response.status_code == 200 and response.headers["Content-Type"] == "image/png"
    assert [row[0] for row in verdict_rows(appliance, response.content)] == ["clean"]


def test_the_same_bytes_are_scanned_once(synapse_url, uploader, appliance, caching):
    data = unique_bytes()
    upload_ok(synapse_url, uploader, data)
    [first] = verdict_rows(appliance, data)
    upload_ok(synapse_url, uploader, data)
    assert verdict_rows(appliance, data) == [first]  # the cached verdict, not a new scan


def test_a_signature_update_rescans_formerly_clean_files(
    synapse_url, uploader, admin_token, appliance, clamd
):
    marker = b"appliance-marker-" + unique_bytes(8).hex().encode()
    data = b"a formerly clean report " + marker
    upload_ok(synapse_url, uploader, data)
    with extra_signature(appliance, clamd, marker):
        refused = upload(synapse_url, uploader, data)
        [record] = records_for(synapse_url, admin_token, data)
        assert record["signature"].startswith("Appliance.Test.Marker-")
        assert_infected(refused, record["signature"])
    upload_ok(synapse_url, uploader, data)  # the signature is gone again: clean once more


def test_a_new_signature_file_never_lets_the_old_clean_verdict_through(
    synapse_url, uploader, admin_token, appliance, caching
):
    marker = b"appliance-marker-" + unique_bytes(8).hex().encode()
    data = b"a report about nothing much " + marker
    upload_ok(synapse_url, uploader, data)
    assert [row[0] for row in verdict_rows(appliance, data)] == ["clean"]
    with added_signature(appliance, marker) as name:
        upload(synapse_url, uploader, data)  # at once: clamd may not have loaded the file yet
        # The old "clean" is gone, and whatever clamd said is not stored under the new
        # signatures.
        assert verdict_rows(appliance, data) == []
        # The module asked clamd to reload (clamd itself only looks every 10 minutes).
        wait_until(
            lambda: upload(synapse_url, uploader, data).status_code == 403,
            "refusal with the new signature file",
            RELOAD_BOUND_SECONDS,
        )
        signatures = {record["signature"] for record in records_for(synapse_url, admin_token, data)}
        assert signatures == {f"{name}.UNOFFICIAL"}


def test_quarantine_listing_is_for_admins_and_paginated(synapse_url, uploader, admin_token):
    for _ in range(2):
        assert_infected(upload(synapse_url, uploader, EICAR))
    assert quarantine(synapse_url, None).json()["errcode"] == "M_MISSING_TOKEN"
    forbidden = quarantine(synapse_url, uploader.token)
    assert forbidden.status_code == 403 and forbidden.json()["errcode"] == "M_FORBIDDEN"

    first = quarantine(synapse_url, admin_token, limit=1).json()
    second = quarantine(synapse_url, admin_token, limit=1, **{"from": first["next_token"]}).json()
    assert first["total"] >= 2 and len(first["records"]) == len(second["records"]) == 1
    assert first["records"][0]["record_id"] != second["records"][0]["record_id"]
    assert first["records"][0]["detected_ts"] >= second["records"][0]["detected_ts"]

    bad = quarantine(synapse_url, admin_token, limit=0)
    assert bad.status_code == 400 and bad.json()["errcode"] == "M_INVALID_PARAM"


def test_with_clamd_stopped_nothing_is_stored_or_served(synapse_url, uploader, appliance):
    known = unique_bytes()
    upload_ok(synapse_url, uploader, known)
    listen = appliance.settings.clamav.listen
    with clamd_stopped(appliance):
        assert_not_scanned(upload(synapse_url, uploader, unique_bytes()))
        # Even bytes with a clean verdict: without clamd the signature version is unknown.
        assert_not_scanned(upload(synapse_url, uploader, known))
        # An asynchronous upload keeps its media ID: it must stay empty, never served.
        created = requests.post(
            f"{synapse_url}/_matrix/media/v1/create", headers=uploader.headers, timeout=TIMEOUT
        ).json()["content_uri"]
        server_name, media_id = created.removeprefix("mxc://").split("/")
        assert_not_scanned(
            requests.put(
                f"{synapse_url}/_matrix/media/v3/upload/{server_name}/{media_id}",
                data=unique_bytes(),
                headers={**uploader.headers, "Content-Type": "application/octet-stream"},
                timeout=TIMEOUT,
            )
        )
        served = requests.get(
            f"{synapse_url}/_matrix/client/v1/media/download/{server_name}/{media_id}",
            params={"timeout_ms": 0},
            headers=uploader.headers,
            timeout=TIMEOUT,
        )
        assert served.status_code != 200
        assert not health.check_clamd(listen.connect_host, listen.port, "evaluation").ok
    assert "antivirus unavailable, not scanned" in appliance.layout.logfile("synapse").read_text()
    upload_ok(synapse_url, uploader, unique_bytes())
