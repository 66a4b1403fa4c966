"""Upload-time scanning in Synapse, against the real Synapse and the real clamd."""

from __future__ import annotations

import hashlib
import io
import sqlite3
import time

import pytest
import requests
from PIL import Image
from synapse.media._base import FileInfo, ThumbnailInfo
from synapse.module_api.errors import ConfigError

from appliance import health
from appliance.clamd_signatures import SignatureFiles
from appliance.synapse_module.config import parse_module_config
from appliance.synapse_module.media_scan import media_kind
from matrix_media_helpers import (
    EICAR,
    TIMEOUT,
    User,
    clamd_stopped,
    download,
    extra_signature,
    register_user,
    unique_bytes,
    upload,
    upload_ok,
    zipped,
)

QUARANTINE = "/_synapse/client/appliance/v1/quarantine"


@pytest.fixture(scope="module")
def uploader(appliance, synapse_url) -> User:
    secret = appliance.layout.secret("registration_shared_secret").read_text().strip()
    return register_user(synapse_url, secret, "uploader")


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


def assert_refused(response: requests.Response) -> None:
    # Synapse answers every refused upload this way, whatever the module returned.
    assert response.status_code == 400, response.text
    assert response.json() == {"errcode": "M_UNKNOWN", "error": "Bad content"}


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
    empty, _ = files.fingerprint()
    (tmp_path / "custom.ndb").write_text("Sig.One:0:*:6162636465\n")
    (tmp_path / "freshclam.dat").write_bytes(b"not a signature file")
    one, _ = files.fingerprint()
    assert one != empty and files.fingerprint()[0] == one
    (tmp_path / "custom.ndb").write_text("Sig.Two:0:*:616263646566\n")
    assert files.fingerprint()[0] not in (empty, one)


def test_database_dir_must_be_a_path():
    assert parse_module_config({"clamd": {"database_dir": "/var/lib/clamav"}}).clamd.database_dir
    with pytest.raises(ConfigError) as caught:
        parse_module_config({"clamd": {"database_dir": 3}})
    assert tuple(caught.value.path) == ("clamd", "database_dir")


# Against the running appliance ---------------------------------------------------------------
def test_clean_file_is_stored_and_served(synapse_url, uploader, appliance):
    data = unique_bytes()
    mxc = upload_ok(synapse_url, uploader, data)
    assert download(synapse_url, uploader, mxc).content == data
    assert [row[:2] for row in verdict_rows(appliance, data)] == [("clean", None)]


def test_eicar_is_refused_and_quarantined_with_its_uploader(synapse_url, uploader, admin_token):
    before = int(time.time() * 1000)
    assert_refused(upload(synapse_url, uploader, EICAR, "text/plain"))
    mine = [
        r for r in records_for(synapse_url, admin_token, EICAR) if r["user_id"] == uploader.user_id
    ]
    assert len(mine) == 1
    assert mine[0]["kind"] == "upload"
    assert mine[0]["media"].startswith(f"mxc://{uploader.user_id.split(':')[1]}/")
    assert mine[0]["signature"] == "Appliance.Evaluation.EICAR-Test-File.UNOFFICIAL"
    assert mine[0]["detected_ts"] >= before


def test_eicar_inside_a_zip_is_refused(synapse_url, uploader, admin_token):
    archive = zipped(f"invoice-{time.time_ns()}.com", EICAR)
    assert_refused(upload(synapse_url, uploader, archive, "application/zip"))
    [record] = records_for(synapse_url, admin_token, archive)
    assert record["user_id"] == uploader.user_id
    assert "EICAR" in record["signature"]


def test_thumbnails_are_scanned_before_they_are_served(synapse_url, uploader, appliance):
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


def test_the_same_bytes_are_scanned_once(synapse_url, uploader, appliance):
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
        assert_refused(upload(synapse_url, uploader, data))
        [record] = records_for(synapse_url, admin_token, data)
        assert record["signature"].startswith("Appliance.Test.Marker-")
    upload_ok(synapse_url, uploader, data)  # the signature is gone again: clean once more


def test_quarantine_listing_is_for_admins_and_paginated(synapse_url, uploader, admin_token):
    for _ in range(2):
        assert_refused(upload(synapse_url, uploader, EICAR))
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
        assert_refused(upload(synapse_url, uploader, unique_bytes()))
        # Even bytes with a clean verdict: without clamd the signature version is unknown.
        assert_refused(upload(synapse_url, uploader, known))
        # An asynchronous upload keeps its media ID: it must stay empty, never served.
        created = requests.post(
            f"{synapse_url}/_matrix/media/v1/create", headers=uploader.headers, timeout=TIMEOUT
        ).json()["content_uri"]
        server_name, media_id = created.removeprefix("mxc://").split("/")
        assert_refused(
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
    assert "could not be scanned" in appliance.layout.logfile("synapse").read_text()
    upload_ok(synapse_url, uploader, unique_bytes())
