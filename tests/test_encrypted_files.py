# SPDX-License-Identifier: AGPL-3.0-or-later
"""The antivirus says what it knows: encrypted archives, infected files and an absent scanner
are three different refusals, for the client and in the logs.

Against the session's real Synapse, content scanner and clamd. The password-protected archives
are made by Info-ZIP's `zip -P` (ZipCrypto), as a user would make one.
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import sqlite3
import subprocess
from contextlib import contextmanager

import pytest
import requests
from matrix_media_helpers import (
    EICAR,
    RELOAD_BOUND_SECONDS,
    TIMEOUT,
    User,
    clamd_stopped,
    download,
    register_user,
    scanner_post,
    unique_bytes,
    upload,
    upload_encrypted,
    upload_ok,
    wait_until,
)

from appliance.config.settings import SettingsError, parse_settings
from appliance.content_scanner.app import ENCRYPTED_INFO
from appliance.evaluation.lifecycle import EvaluationAppliance
from appliance.operations.health import ENCRYPTED_ALLOWED, ENCRYPTED_REFUSED
from appliance.synapse_module.media.scan import (
    ENCRYPTED_MESSAGE,
    INFECTED_MESSAGE,
    NOT_SCANNED_MESSAGE,
)

ZIP_ENCRYPTED_SIGNATURE = "Heuristics.Encrypted.Zip"


@pytest.fixture(scope="module")
def scanner_url(appliance) -> str:
    return appliance.settings.content_scanner.listen.url


@pytest.fixture(scope="module")
def user(appliance, synapse_url) -> User:
    secret = appliance.layout.secret("registration_shared_secret").read_text().strip()
    return register_user(synapse_url, secret, "archiver")


@pytest.fixture
def protected_zip(tmp_path) -> bytes:
    """A password-protected zip of a harmless, never-seen-before report."""
    zip_binary = shutil.which("zip")
    assert zip_binary, "zip is not installed: scripts/install-system-packages --with-test-packages"
    (tmp_path / "report.txt").write_bytes(unique_bytes(2048))
    subprocess.run(
        [zip_binary, "-q", "-P", "correct horse", "report.zip", "report.txt"],
        cwd=tmp_path,
        check=True,
    )
    archive = (tmp_path / "report.zip").read_bytes()
    assert archive[6] & 1, "zip did not encrypt the entry"  # general purpose flag, bit 0
    return archive


def password_protected_pdf() -> bytes:
    """A one-page PDF encrypted with the standard handler (RC4, revision 2) under a password
    that is not empty: its /O and /U entries are random, as no empty password opens it."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R >>",
        b"<< /Length 16 >>\nstream\n" + secrets.token_bytes(16) + b"\nendstream",
        b"<< /Filter /Standard /V 1 /R 2 /P -4 /O <%s> /U <%s> >>"
        % (secrets.token_hex(32).encode(), secrets.token_hex(32).encode()),
    ]
    pdf, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(pdf))
        pdf += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(pdf)
    pdf += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    pdf += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    document_id = secrets.token_hex(16).encode()
    pdf += b"trailer\n<< /Size %d /Root 1 0 R /Encrypt 5 0 R /ID [<%s> <%s>] >>\n" % (
        len(objects) + 1,
        document_id,
        document_id,
    )
    return bytes(pdf + b"startxref\n%d\n%%%%EOF\n" % xref)


def stored_media(appliance, data: bytes) -> int:
    """How many local media rows Synapse recorded for these bytes."""
    path = appliance.layout.synapse_dir / "homeserver.db"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        (count,) = db.execute(
            "SELECT COUNT(*) FROM local_media_repository WHERE sha256 = ?",
            (hashlib.sha256(data).hexdigest(),),
        ).fetchone()
    return count


def module_verdicts(appliance, data: bytes) -> list[str]:
    """The Synapse module's cached verdicts on these bytes ("clean" or "infected")."""
    path = appliance.layout.synapse_dir / "homeserver.db"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT verdict FROM appliance_media_verdicts WHERE sha256 = ?",
            (hashlib.sha256(data).hexdigest(),),
        )
        return [verdict for (verdict,) in rows]


def scanner_verdicts(appliance, plaintext: bytes) -> list[int]:
    """The content scanner's cached verdicts (1 clean, 0 not) on these decrypted bytes."""
    path = appliance.layout.content_scanner_dir / "verdicts.sqlite3"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT clean FROM verdicts WHERE sha256 = ?", (hashlib.sha256(plaintext).hexdigest(),)
        )
        return [clean for (clean,) in rows]


def wait_for_verdict_caching(appliance, synapse_url: str, scanner_url: str, user: User) -> None:
    """Both the module and the scanner store verdicts (they do once clamd has certainly loaded
    the current signatures; each request moves that along)."""

    def module_caches() -> bool:
        probe = unique_bytes(64)
        upload_ok(synapse_url, user, probe)
        return bool(module_verdicts(appliance, probe))

    def scanner_caches() -> bool:
        health = requests.get(f"{scanner_url}/health", timeout=TIMEOUT).json()
        return health["verdicts_cached"]

    wait_until(module_caches, "verdict caching in the module", RELOAD_BOUND_SECONDS)
    wait_until(scanner_caches, "verdict caching in the scanner", RELOAD_BOUND_SECONDS)


def log_of(appliance, service: str) -> str:
    return appliance.layout.logfile(service).read_text(errors="replace")


def async_upload(synapse_url: str, user: User, data: bytes) -> tuple[requests.Response, str]:
    """Reserve a media ID (POST /create), then PUT the bytes into it, as Element does."""
    created = requests.post(
        f"{synapse_url}/_matrix/media/v1/create", headers=user.headers, timeout=TIMEOUT
    )
    mxc = created.json()["content_uri"]
    response = requests.put(
        f"{synapse_url}/_matrix/media/v3/upload/{mxc.removeprefix('mxc://')}",
        data=data,
        headers={**user.headers, "Content-Type": "application/zip"},
        timeout=TIMEOUT,
    )
    return response, mxc


@contextmanager
def encrypted_archives_allowed(appliance):
    """`clamav.allow_encrypted_archives: true` applied as `make up` applies an edited
    appliance.yaml (only clamd restarts), and the default restored afterwards."""
    clamav = appliance.settings.clamav.model_copy(update={"allow_encrypted_archives": True})
    allowed = appliance.settings.model_copy(update={"clamav": clamav})
    try:
        report = EvaluationAppliance(allowed, appliance.layout).up()
        assert report.restarted == ["clamd"]
        yield
    finally:
        assert appliance.up().restarted == ["clamd"]


def test_a_password_protected_zip_is_refused_at_upload_and_nothing_is_kept(
    appliance, synapse_url, user, admin_token, protected_zip
):
    refused = upload(synapse_url, user, protected_zip, "application/zip")
    assert refused.status_code == 403
    assert refused.json() == {"errcode": "M_FORBIDDEN", "error": ENCRYPTED_MESSAGE}
    put, mxc = async_upload(synapse_url, user, protected_zip)
    assert (put.status_code, put.json()["error"]) == (403, ENCRYPTED_MESSAGE)
    assert download(synapse_url, user, mxc).status_code != 200
    assert stored_media(appliance, protected_zip) == 0
    listing = requests.get(
        f"{synapse_url}/_synapse/client/appliance/v1/quarantine",
        params={"limit": 1000},
        headers={"Authorization": f"Bearer {admin_token}"},
        timeout=TIMEOUT,
    ).json()
    sha256 = hashlib.sha256(protected_zip).hexdigest()
    records = [record for record in listing["records"] if record["sha256"] == sha256]
    assert {(r["signature"], r["user_id"], r["kind"]) for r in records} == {
        (ZIP_ENCRYPTED_SIGNATURE, user.user_id, "upload")
    }
    assert "refused encrypted upload mxc://" in log_of(appliance, "synapse")


def test_a_password_protected_pdf_is_refused_at_upload(appliance, synapse_url, user):
    document = password_protected_pdf()
    refused = upload(synapse_url, user, document, "application/pdf")
    assert (refused.status_code, refused.json()) == (
        403,
        {"errcode": "M_FORBIDDEN", "error": ENCRYPTED_MESSAGE},
    )
    assert stored_media(appliance, document) == 0


def test_infected_and_unscanned_are_told_apart(appliance, synapse_url, user):
    infected = upload(synapse_url, user, EICAR, "text/plain")
    signature = "Appliance.Evaluation.EICAR-Test-File.UNOFFICIAL"
    assert infected.status_code == 403
    assert infected.json() == {
        "errcode": "M_FORBIDDEN",
        "error": INFECTED_MESSAGE.format(signature=signature),
    }
    data = unique_bytes()
    with clamd_stopped(appliance):
        unscanned = upload(synapse_url, user, data)
    assert unscanned.status_code == 503
    assert unscanned.json() == {"errcode": "M_UNKNOWN", "error": NOT_SCANNED_MESSAGE}
    assert stored_media(appliance, data) == 0
    log = log_of(appliance, "synapse")
    assert "refused infected upload mxc://" in log and signature in log
    assert "antivirus unavailable, not scanned: cannot connect to clamd" in log
    upload_ok(synapse_url, user, data)  # clamd is back: the same file goes through


def test_an_encrypted_archive_inside_an_attachment_is_not_clean(
    appliance, scanner_url, synapse_url, user, protected_zip
):
    # Element encrypts the zip again for the room; the scanner decrypts that layer, not the zip's.
    file = upload_encrypted(synapse_url, user, protected_zip)
    answer = scanner_post(scanner_url, "scan_encrypted", {"file": file}, user)
    assert answer.json() == {
        "clean": False,
        "info": ENCRYPTED_INFO.format(signature=ZIP_ENCRYPTED_SIGNATURE),
    }
    refused = scanner_post(scanner_url, "download_encrypted", {"file": file}, user)
    assert (refused.status_code, refused.json()["reason"]) == (403, "MCS_MEDIA_NOT_CLEAN")
    assert f"is not clean: {ZIP_ENCRYPTED_SIGNATURE}" in log_of(appliance, "content-scanner")


def test_the_health_check_says_encrypted_archives_are_refused(appliance):
    clamd = appliance.health_checks()["clamd"]
    assert clamd.ok and clamd.summary.endswith(ENCRYPTED_REFUSED)
    assert clamd.details["encrypted_archives"] == "refused"


def test_the_setting_lets_encrypted_archives_through_and_back_out(
    appliance, scanner_url, synapse_url, user, protected_zip
):
    attachment = upload_encrypted(synapse_url, user, protected_zip)
    with encrypted_archives_allowed(appliance):
        clamd = appliance.health_checks()["clamd"]
        assert clamd.ok and clamd.summary.endswith(ENCRYPTED_ALLOWED)
        wait_for_verdict_caching(appliance, synapse_url, scanner_url, user)
        mxc = upload_ok(synapse_url, user, protected_zip, content_type="application/zip")
        assert download(synapse_url, user, mxc).content == protected_zip
        answer = scanner_post(scanner_url, "scan_encrypted", {"file": attachment}, user)
        assert answer.json()["clean"] is True
        # Both remembered "clean" for these bytes...
        assert module_verdicts(appliance, protected_zip) == ["clean"]
        assert scanner_verdicts(appliance, protected_zip) == [1]
    # ...and back to the default, neither reuses it.
    assert appliance.health_checks()["clamd"].summary.endswith(ENCRYPTED_REFUSED)
    refused = upload(synapse_url, user, protected_zip, "application/zip")
    assert (refused.status_code, refused.json()["error"]) == (403, ENCRYPTED_MESSAGE)
    answer = scanner_post(scanner_url, "scan_encrypted", {"file": attachment}, user)
    assert answer.json()["clean"] is False


def test_the_setting_is_validated_with_its_path():
    with pytest.raises(SettingsError) as caught:
        parse_settings({"clamav": {"allow_encrypted_archives": "perhaps"}}, "test")
    assert "clamav.allow_encrypted_archives" in str(caught.value)
