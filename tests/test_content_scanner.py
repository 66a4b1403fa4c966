"""The content scanner (matrix-content-scanner API) against the real Synapse and real clamd."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import socket

import pytest
import requests
import vodozemac
from hypothesis import given, settings
from hypothesis import strategies as st
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from PIL import Image

from appliance import health
from appliance.clamd import ClamdClient
from appliance.clamd_signatures import SignatureFiles
from appliance.content_scanner.app import create_app
from appliance.content_scanner.attachment import parse_encrypted_file
from appliance.content_scanner.config import ScannerConfig
from appliance.content_scanner.errors import ScannerError
from appliance.content_scanner.scanner import Scanner
from appliance.content_scanner.verdict_store import VerdictStore
from matrix_media_helpers import (
    EICAR,
    TIMEOUT,
    User,
    clamd_stopped,
    encrypt_attachment,
    extra_signature,
    register_user,
    restart_service,
    scanner_get,
    scanner_post,
    unique_bytes,
    upload_encrypted,
    upload_ok,
    zipped,
)


@pytest.fixture(scope="module")
def scanner_url(appliance) -> str:
    return appliance.settings.content_scanner.listen.url


@pytest.fixture(scope="module")
def user(appliance, synapse_url) -> User:
    secret = appliance.layout.secret("registration_shared_secret").read_text().strip()
    return register_user(synapse_url, secret, "reader")


def media_path(mxc: str) -> str:
    return mxc.removeprefix("mxc://")


def decrypt(ciphertext: bytes, file: dict) -> bytes:
    def raw(text: str) -> bytes:
        return base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_") + "==")

    decryptor = Cipher(
        algorithms.AES(raw(file["key"]["k"])), modes.CTR(raw(file["iv"]))
    ).decryptor()
    return decryptor.update(ciphertext) + decryptor.finalize()


def stats(scanner_url: str) -> dict:
    return requests.get(f"{scanner_url}/health", timeout=TIMEOUT).json()["stats"]


def assert_error(response: requests.Response, status: int, reason: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["reason"] == reason
    assert response.json()["info"]  # always a human explanation too


# Pure logic ----------------------------------------------------------------------------------
@settings(max_examples=50, deadline=None)
@given(plaintext=st.binary(max_size=4096), flip=st.integers(min_value=0))
def test_attachments_decrypt_and_any_changed_byte_is_refused(plaintext, flip):
    ciphertext, info = encrypt_attachment(plaintext)
    file = parse_encrypted_file({"file": {**info, "url": "mxc://example.org/abc"}})
    assert file.decrypt(ciphertext) == plaintext
    if ciphertext:
        position = flip % len(ciphertext)
        changed = (
            ciphertext[:position]
            + bytes([ciphertext[position] ^ 0xFF])
            + ciphertext[position + 1 :]
        )
        with pytest.raises(ScannerError) as caught:
            file.decrypt(changed)
        assert caught.value.reason == "MCS_BAD_DECRYPTION"


def test_the_cache_identity_depends_on_the_key_not_only_the_ciphertext():
    _, info = encrypt_attachment(b"same bytes")
    first = parse_encrypted_file({"file": {**info, "url": "mxc://example.org/abc"}})
    other_key = {**info["key"], "k": base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")}
    second = parse_encrypted_file(
        {"file": {**info, "key": other_key, "url": "mxc://example.org/abc"}}
    )
    assert first.identity != second.identity


# Plain media ---------------------------------------------------------------------------------
def test_clean_plain_media_is_scanned_and_served(scanner_url, synapse_url, user):
    data = unique_bytes()
    path = media_path(upload_ok(synapse_url, user, data, content_type="text/plain"))
    assert scanner_get(scanner_url, f"scan/{path}", user).json() == {
        "clean": True,
        "info": "File is clean",
    }
    served = scanner_get(scanner_url, f"download/{path}", user)
    assert served.status_code == 200 and served.content == data
    assert served.headers["Content-Type"].startswith("text/plain")


def test_thumbnails_are_scanned_and_served(scanner_url, synapse_url, user):
    buffer = io.BytesIO()
    Image.new("RGB", (80, 80), color=(200, 10, 10)).save(buffer, format="PNG")
    path = media_path(upload_ok(synapse_url, user, buffer.getvalue(), content_type="image/png"))
    served = scanner_get(scanner_url, f"thumbnail/{path}", user, width=32, height=32, method="crop")
    assert served.status_code == 200 and served.headers["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(served.content)).size == (32, 32)


def test_media_errors_use_the_api_codes(scanner_url, synapse_url, user):
    path = media_path(upload_ok(synapse_url, user, unique_bytes()))
    assert_error(scanner_get(scanner_url, f"scan/{path}"), 401, "M_MISSING_TOKEN")
    stranger = User("@nobody:test", "not-a-token")
    assert_error(scanner_get(scanner_url, f"download/{path}", stranger), 401, "M_UNKNOWN_TOKEN")
    server_name = path.split("/")[0]
    assert_error(
        scanner_get(scanner_url, f"scan/{server_name}/NoSuchMedia", user), 404, "M_NOT_FOUND"
    )
    assert_error(scanner_get(scanner_url, "scan/bad..server!/x", user), 400, "M_UNKNOWN")
    assert_error(scanner_get(scanner_url, "no_such_endpoint", user), 404, "M_NOT_FOUND")


# Encrypted attachments -----------------------------------------------------------------------
def test_clean_attachment_is_scanned_and_its_ciphertext_served(scanner_url, synapse_url, user):
    plaintext = unique_bytes()
    file = upload_encrypted(synapse_url, user, plaintext)
    answer = scanner_post(scanner_url, "scan_encrypted", {"file": file}, user)
    assert answer.json() == {"clean": True, "info": "File is clean"}
    served = scanner_post(scanner_url, "download_encrypted", {"file": file}, user)
    assert served.status_code == 200
    assert served.content != plaintext and decrypt(served.content, file) == plaintext


@pytest.mark.parametrize("payload", [EICAR, zipped("payload.com", EICAR)], ids=["plain", "zip"])
def test_eicar_attachment_is_not_clean(scanner_url, synapse_url, user, payload):
    # Synapse stores the ciphertext: only the scanner, with the key, can see what it is.
    file = upload_encrypted(synapse_url, user, payload)
    answer = scanner_post(scanner_url, "scan_encrypted", {"file": file}, user)
    assert answer.status_code == 200 and answer.json()["clean"] is False
    assert "Appliance.Evaluation.EICAR-Test-File" in answer.json()["info"]
    refused = scanner_post(scanner_url, "download_encrypted", {"file": file}, user)
    assert_error(refused, 403, "MCS_MEDIA_NOT_CLEAN")


def test_tampered_ciphertext_is_a_bad_decryption(scanner_url, synapse_url, user):
    ciphertext, file = encrypt_attachment(unique_bytes())
    tampered = bytes([ciphertext[0] ^ 1]) + ciphertext[1:]
    file["url"] = upload_ok(synapse_url, user, tampered)
    for endpoint in ("scan_encrypted", "download_encrypted"):
        response = scanner_post(scanner_url, endpoint, {"file": file}, user)
        assert_error(response, 403, "MCS_BAD_DECRYPTION")


@pytest.mark.parametrize(
    "change",
    [
        lambda file: file.pop("hashes"),
        lambda file: file.update(v="v1"),
        lambda file: file["key"].update(alg="A128CBC"),
        lambda file: file["key"].update(k="not base64!"),
        lambda file: file.update(iv=base64.b64encode(b"short").decode()),
        lambda file: file.update(url="https://example.org/file"),
    ],
    ids=["no-hashes", "v1", "alg", "key-not-base64", "short-iv", "not-mxc"],
)
def test_malformed_metadata_is_refused(scanner_url, synapse_url, user, change):
    file = upload_encrypted(synapse_url, user, unique_bytes())
    change(file)
    assert_error(
        scanner_post(scanner_url, "scan_encrypted", {"file": file}, user), 400, "MCS_MALFORMED_JSON"
    )


def test_a_body_that_is_not_json_is_malformed(scanner_url, user):
    response = requests.post(
        f"{scanner_url}/_matrix/media_proxy/unstable/scan_encrypted",
        data=b"{not json",
        headers=user.headers,
        timeout=TIMEOUT,
    )
    assert_error(response, 400, "MCS_MALFORMED_JSON")


def test_encrypted_request_bodies(scanner_url, synapse_url, user):
    key = scanner_get(scanner_url, "public_key").json()["public_key"]
    file = upload_encrypted(synapse_url, user, unique_bytes())
    message = vodozemac.PkEncryption.from_key(
        vodozemac.Curve25519PublicKey.from_base64(key)
    ).encrypt(json.dumps({"file": file}).encode())

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode().rstrip("=")

    body = {
        "ciphertext": b64(message.ciphertext),
        "mac": b64(message.mac),
        "ephemeral": b64(message.ephemeral_key),
    }
    answer = scanner_post(scanner_url, "scan_encrypted", {"encrypted_body": body}, user)
    assert answer.json() == {"clean": True, "info": "File is clean"}
    forged = {**body, "mac": b64(os.urandom(8))}
    response = scanner_post(scanner_url, "scan_encrypted", {"encrypted_body": forged}, user)
    assert_error(response, 403, "MCS_BAD_DECRYPTION")


# Verdicts: shared, kept, renewed -------------------------------------------------------------
def test_concurrent_requests_for_one_file_share_one_scan(appliance, clamd, tmp_path):
    store = VerdictStore(tmp_path / "verdicts.sqlite3")
    scanner = Scanner(clamd, SignatureFiles(appliance.layout.clamav_database_dir), store, 30)
    content = os.urandom(8 << 20)

    async def ask_eight_times():
        state = await scanner.signature_state()
        return await asyncio.gather(*(scanner.content_verdict(content, state) for _ in range(8)))

    answers = asyncio.run(ask_eight_times())
    assert {verdict.clean for _, verdict in answers} == {True}
    assert scanner.stats.scans == 1
    assert scanner.stats.shared + scanner.stats.cache_hits == 7


def test_a_known_file_is_answered_from_the_cache_after_a_restart(
    appliance, scanner_url, synapse_url, user
):
    file = upload_encrypted(synapse_url, user, unique_bytes())
    assert scanner_post(scanner_url, "scan_encrypted", {"file": file}, user).json()["clean"]
    restart_service(appliance, "content-scanner")
    assert scanner_post(scanner_url, "scan_encrypted", {"file": file}, user).json()["clean"]
    assert stats(scanner_url) == {"scans": 0, "cache_hits": 1, "shared": 0}


def test_a_signature_update_rescans_formerly_clean_files(
    appliance, clamd, scanner_url, synapse_url, user
):
    marker = b"appliance-marker-" + unique_bytes(8).hex().encode()
    file = upload_encrypted(synapse_url, user, b"minutes of the meeting " + marker)
    assert scanner_post(scanner_url, "scan_encrypted", {"file": file}, user).json()["clean"]
    with extra_signature(appliance, clamd, marker):
        answer = scanner_post(scanner_url, "scan_encrypted", {"file": file}, user).json()
        assert answer["clean"] is False and "Appliance.Test.Marker-" in answer["info"]
    assert scanner_post(scanner_url, "scan_encrypted", {"file": file}, user).json()["clean"]


def test_with_clamd_stopped_nothing_unscanned_is_served(appliance, scanner_url, synapse_url, user):
    known = upload_encrypted(synapse_url, user, unique_bytes())
    assert scanner_post(scanner_url, "scan_encrypted", {"file": known}, user).json()["clean"]
    fresh = upload_encrypted(synapse_url, user, unique_bytes())
    plain = media_path(upload_ok(synapse_url, user, unique_bytes()))
    with clamd_stopped(appliance):
        for endpoint, file in [("scan_encrypted", fresh), ("download_encrypted", known)]:
            response = scanner_post(scanner_url, endpoint, {"file": file}, user)
            assert_error(response, 503, "MCS_MEDIA_NOT_CLEAN")
        for endpoint in ("scan", "download"):
            assert_error(
                scanner_get(scanner_url, f"{endpoint}/{plain}", user), 503, "MCS_MEDIA_NOT_CLEAN"
            )
        assert not health.check_content_scanner(scanner_url).ok
    assert scanner_post(scanner_url, "scan_encrypted", {"file": fresh}, user).json()["clean"]
    assert health.check_content_scanner(scanner_url).ok


def test_an_unreachable_media_repository_is_a_failed_request(appliance, clamd, user, tmp_path):
    listen = appliance.settings.clamav.listen
    config = ScannerConfig(
        listen_host="127.0.0.1",
        listen_port=0,
        synapse_url="http://127.0.0.1:9",  # discard port: nothing listens there
        clamd_host=listen.connect_host,
        clamd_port=listen.port,
        clamd_timeout_seconds=10,
        signature_dir=appliance.layout.clamav_database_dir,
        state_dir=tmp_path,
        body_key_file=tmp_path / "body.key",
        max_file_size_bytes=1 << 20,
    )

    async def ask() -> tuple[int, dict]:
        async with TestClient(TestServer(create_app(config))) as client:
            response = await client.get(
                "/_matrix/media_proxy/unstable/scan/test.appliance.localhost/abc",
                headers=user.headers,
            )
            return response.status, await response.json()

    status, body = asyncio.run(ask())
    assert (status, body["reason"]) == (502, "MCS_MEDIA_REQUEST_FAILED")
    assert (tmp_path / "body.key").stat().st_mode & 0o777 == 0o600


def test_a_clamd_that_never_answers_means_no_verdict(appliance, tmp_path):
    """A clamd that accepts connections but stays silent (hung, overloaded): refused in time."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        scanner = Scanner(
            ClamdClient("127.0.0.1", silent.getsockname()[1], timeout=0.5),
            SignatureFiles(appliance.layout.clamav_database_dir),
            VerdictStore(tmp_path / "verdicts.sqlite3"),
            timeout=0.5,
        )
        with pytest.raises(ScannerError) as caught:
            asyncio.run(scanner.signature_state())
    assert (caught.value.status, caught.value.reason) == (503, "MCS_MEDIA_NOT_CLEAN")


# Health --------------------------------------------------------------------------------------
def test_health_shows_the_scanner_and_the_signatures(appliance, scanner_url):
    assert health.check_content_scanner(scanner_url).ok
    clamd_check = appliance.health_checks()["clamd"]
    assert clamd_check.ok and "EVALUATION signatures" in clamd_check.summary
    assert clamd_check.details["signature_version"][:12] in clamd_check.summary
    assert clamd_check.details["age_seconds"] is not None and "old" in clamd_check.summary
