# SPDX-License-Identifier: AGPL-3.0-or-later
"""The content scanner (matrix-content-scanner API) against the real Synapse and real clamd."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.client
import io
import json
import os
import socket
import sqlite3
import tracemalloc
from urllib.parse import urlsplit

import pytest
import requests
import vodozemac
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st
from matrix_media_helpers import (
    EICAR,
    MEDIA_PROXY,
    RELOAD_BOUND_SECONDS,
    TIMEOUT,
    User,
    added_signature,
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
    wait_until,
    zipped,
)
from PIL import Image

from appliance.addresses.media_ref import InvalidMediaRef, MediaRef
from appliance.antivirus.clamd import ClamdClient
from appliance.antivirus.signatures import SignatureFiles
from appliance.content_scanner.access_cache import AccessCache
from appliance.content_scanner.app import BODY_LIMIT, create_app
from appliance.content_scanner.attachment import parse_encrypted_file
from appliance.content_scanner.config import ConfigError, ScannerConfig
from appliance.content_scanner.errors import ScannerError
from appliance.content_scanner.scanner import Scanner, whole
from appliance.content_scanner.verdict_store import VerdictStore
from appliance.operations import health


@pytest.fixture(scope="module")
def scanner_url(appliance) -> str:
    return appliance.settings.content_scanner.listen.url


@pytest.fixture(scope="module")
def user(appliance, synapse_url) -> User:
    secret = appliance.layout.secret("registration_shared_secret").read_text().strip()
    return register_user(synapse_url, secret, "reader")


@pytest.fixture
def caching(scanner_url) -> None:
    """The scanner stores verdicts: clamd has certainly loaded the current signatures (for a
    few seconds after they change, it does not; asking /health moves it along)."""
    wait_until(
        lambda: health_of(scanner_url)["verdicts_cached"], "verdict caching", RELOAD_BOUND_SECONDS
    )


def media_path(mxc: str) -> str:
    return mxc.removeprefix("mxc://")


def health_of(scanner_url: str) -> dict:
    return requests.get(f"{scanner_url}/health", timeout=TIMEOUT).json()


def stored_verdicts(appliance, plaintext: bytes) -> list[int]:
    """The scanner's stored verdicts (1 clean, 0 not) for these bytes, from its database."""
    path = appliance.layout.content_scanner_dir / "verdicts.sqlite3"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT clean FROM verdicts WHERE sha256 = ?", (hashlib.sha256(plaintext).hexdigest(),)
        )
        return [clean for (clean,) in rows]


def raw_get(scanner_url: str, path: str, user: User) -> tuple[int, dict]:
    """GET exactly this path: requests would decode %2E into "." and the server then remove
    "..", so the request would never be the one an attacker sends."""
    address = urlsplit(scanner_url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=TIMEOUT)
    try:
        connection.request("GET", f"{MEDIA_PROXY}/{path}", headers=user.headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def decrypt(ciphertext: bytes, file: dict) -> bytes:
    def raw(text: str) -> bytes:
        return base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_") + "==")

    decryptor = Cipher(
        algorithms.AES(raw(file["key"]["k"])), modes.CTR(raw(file["iv"]))
    ).decryptor()
    return decryptor.update(ciphertext) + decryptor.finalize()


def stats(scanner_url: str) -> dict:
    return health_of(scanner_url)["stats"]


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
    file.verify(ciphertext)
    assert b"".join(file.plaintext_chunks(ciphertext)) == plaintext
    if ciphertext:
        position = flip % len(ciphertext)
        changed = (
            ciphertext[:position]
            + bytes([ciphertext[position] ^ 0xFF])
            + ciphertext[position + 1 :]
        )
        with pytest.raises(ScannerError) as caught:
            file.verify(changed)
        assert caught.value.reason == "MCS_BAD_DECRYPTION"


def test_large_attachments_decrypt_a_chunk_at_a_time():
    plaintext = os.urandom((3 << 20) + 17)  # several chunks and a partial one
    ciphertext, info = encrypt_attachment(plaintext)
    file = parse_encrypted_file({"file": {**info, "url": "mxc://example.org/abc"}})
    chunks = list(file.plaintext_chunks(ciphertext))
    assert len(chunks) == 4 and b"".join(chunks) == plaintext


def test_the_cache_identity_depends_on_the_key_not_only_the_ciphertext():
    _, info = encrypt_attachment(b"same bytes")
    first = parse_encrypted_file({"file": {**info, "url": "mxc://example.org/abc"}})
    other_key = {**info["key"], "k": base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")}
    second = parse_encrypted_file(
        {"file": {**info, "key": other_key, "url": "mxc://example.org/abc"}}
    )
    assert first.identity != second.identity


# Media references ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "server_name",
    [
        "..",
        ".",
        "",
        "a..b",
        ".example.org",
        "example.org.",
        "-",
        "exa mple.org",
        "example.org:",
        "example.org:99999",
        "example.org:8a",
        "[::1",
        "[not-ipv6]",
        "a/b",
        "%2E%2E",
    ],
)
def test_server_names_outside_the_grammar_are_refused(server_name):
    with pytest.raises(InvalidMediaRef):
        MediaRef.from_parts(server_name, "abc")


@pytest.mark.parametrize("media_id", ["..", ".", "", "a/b", "a%2Fb", "a.b", "a\\b", "é"])
def test_media_ids_outside_the_grammar_are_refused(media_id):
    with pytest.raises(InvalidMediaRef):
        MediaRef.from_parts("example.org", media_id)


@pytest.mark.parametrize(
    "server_name",
    [
        "example.org",
        "matrix.example.org:8448",
        "127.0.0.1:8008",
        "localhost",
        "[::1]:8448",
        "[2001:db8::1]",
        "x-1.example.org",
    ],
)
def test_real_server_names_are_accepted(server_name):
    ref = MediaRef.from_mxc(f"mxc://{server_name}/AbC_d-9")
    assert (ref.server_name, ref.media_id, str(ref)) == (
        server_name,
        "AbC_d-9",
        f"mxc://{server_name}/AbC_d-9",
    )


@settings(max_examples=300)
@given(server_name=st.text(alphabet="ab.-:[]1/%", max_size=12))
def test_an_accepted_server_name_is_one_url_segment_with_real_labels(server_name):
    try:
        ref = MediaRef.from_parts(server_name, "abc")
    except InvalidMediaRef:
        return
    segment = ref.url_path.split("/")[0]
    assert segment not in (".", "..") and "/" not in server_name
    if not server_name.startswith("["):
        host = server_name.split(":")[0]
        assert all(label.strip("-") for label in host.split("."))


def test_what_an_operator_types_is_parsed_as_strictly():
    local = "test.appliance.localhost"
    assert MediaRef.parse(" mxc://example.org/abc ", local) == MediaRef("example.org", "abc")
    assert MediaRef.parse("example.org/abc", local) == MediaRef("example.org", "abc")
    assert MediaRef.parse("local/abc", local) == MediaRef(local, "abc")
    for typed in ("mxc://../x", "../x", "mxc://example.org/../x", "mxc://example.org/a/b"):
        with pytest.raises(ValueError):  # the console shows ValueError's message
            MediaRef.parse(typed, local)


@pytest.mark.parametrize(
    "path", ["%2E%2E/config", "%2E/config", "a..b/config", "example.org/%2E%2E", "example.org/a.b"]
)
def test_traversal_attempts_never_reach_synapse(scanner_url, user, path):
    for endpoint in ("scan", "download", "thumbnail"):
        status, body = raw_get(scanner_url, f"{endpoint}/{path}", user)
        assert (status, body["reason"]) == (400, "M_UNKNOWN"), body
        assert "Malformed media ID" in body["info"]


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
    put = requests.put(f"{scanner_url}{MEDIA_PROXY}/scan/{path}", timeout=TIMEOUT)
    assert_error(put, 405, "M_UNKNOWN")


def test_an_oversized_body_is_refused_in_the_api_format(scanner_url, user):
    response = requests.post(
        f"{scanner_url}{MEDIA_PROXY}/scan_encrypted",
        data=b"{" + b" " * BODY_LIMIT + b"}",
        headers={**user.headers, "Content-Type": "application/json"},
        timeout=TIMEOUT,
    )
    assert_error(response, 413, "M_TOO_LARGE")
    assert str(BODY_LIMIT) in response.json()["info"]
    assert response.headers["Access-Control-Allow-Origin"] == "*"


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
        lambda file: file.update(url="mxc://../config"),
        lambda file: file.update(url="mxc://%2E%2E/config"),
        lambda file: file.update(url="mxc://example.org/../config"),
    ],
    ids=[
        "no-hashes",
        "v1",
        "alg",
        "key-not-base64",
        "short-iv",
        "not-mxc",
        "dot-dot-server",
        "encoded-dot-dot",
        "dot-dot-media",
    ],
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


def test_a_cached_verdict_needs_the_clients_access_and_bytes_always_do(
    appliance, scanner_url, synapse_url, user, admin_token, caching
):
    file = upload_encrypted(synapse_url, user, unique_bytes())
    # Synapse served the file to `user` for this scan: a grant remembered for a while.
    assert scanner_post(scanner_url, "scan_encrypted", {"file": file}, user).json()["clean"]
    hits = stats(scanner_url)["cache_hits"]
    secret = appliance.layout.secret("registration_shared_secret").read_text().strip()
    other = register_user(synapse_url, secret, "other-reader")
    stranger = User("@nobody:test", "not-a-token")
    anonymous = scanner_post(scanner_url, "scan_encrypted", {"file": file})
    assert_error(anonymous, 401, "M_MISSING_TOKEN")
    refused = scanner_post(scanner_url, "scan_encrypted", {"file": file}, stranger)
    assert_error(refused, 401, "M_UNKNOWN_TOKEN")
    quarantined = requests.post(
        f"{synapse_url}/_synapse/admin/v1/media/quarantine/{media_path(file['url'])}",
        headers={"Authorization": f"Bearer {admin_token}"},
        timeout=TIMEOUT,
    )
    assert quarantined.status_code == 200, quarantined.text
    # A client without a recent grant is asked about: Synapse says the media is gone.
    for _ in range(2):
        gone = scanner_post(scanner_url, "scan_encrypted", {"file": file}, other)
        assert_error(gone, 404, "M_NOT_FOUND")
    # The remembered grant answers `user` the verdict (access_cache.TTL_SECONDS at most),
    # never the bytes: a download always asks Synapse with the client's token.
    assert scanner_post(scanner_url, "scan_encrypted", {"file": file}, user).json()["clean"]
    withheld = scanner_post(scanner_url, "download_encrypted", {"file": file}, user)
    assert_error(withheld, 404, "M_NOT_FOUND")
    # Each scan_encrypted was a verdict the cache knew; only the access differed.
    assert stats(scanner_url)["cache_hits"] == hits + 5


def test_access_grants_are_per_token_and_media_and_expire():
    now = [1000.0]
    grants = AccessCache(ttl_seconds=30, max_entries=3, clock=lambda: now[0])
    media, other_media = MediaRef("example.org", "abc"), MediaRef("example.org", "def")
    grants.grant("Bearer alice", media)
    assert grants.allows("Bearer alice", media)
    assert not grants.allows("Bearer bob", media)
    assert not grants.allows(None, media)
    assert not grants.allows("Bearer alice", other_media)
    now[0] += 29.9
    assert grants.allows("Bearer alice", media)
    now[0] += 0.1
    assert not grants.allows("Bearer alice", media)


def test_access_grants_are_bounded_oldest_first():
    grants = AccessCache(ttl_seconds=30, max_entries=3)
    media = [MediaRef("example.org", f"m{index}") for index in range(4)]
    for item in media:
        grants.grant("Bearer alice", item)
    assert [grants.allows("Bearer alice", item) for item in media] == [False, True, True, True]


# Verdicts: shared, kept, renewed -------------------------------------------------------------
def test_concurrent_requests_for_one_file_share_one_scan(appliance, clamd, tmp_path):
    store = VerdictStore(tmp_path / "verdicts.sqlite3")
    scanner = Scanner(clamd, SignatureFiles(appliance.layout.clamav_database_dir), store, 30)
    content = os.urandom(8 << 20)

    async def ask_eight_times():
        state = await scanner.signature_state()
        return await asyncio.gather(
            *(scanner.content_verdict(whole(content), state) for _ in range(8))
        )

    answers = asyncio.run(ask_eight_times())
    assert {verdict.clean for _, verdict in answers} == {True}
    assert scanner.stats.scans == 1
    assert scanner.stats.shared + scanner.stats.cache_hits == 7


def test_an_attachment_is_held_in_memory_once(appliance, clamd, tmp_path):
    """Checking, decrypting, hashing and scanning add chunks, never another whole file."""
    size = 16 << 20
    ciphertext, info = encrypt_attachment(os.urandom(size))
    file = parse_encrypted_file({"file": {**info, "url": "mxc://example.org/abc"}})
    store = VerdictStore(tmp_path / "verdicts.sqlite3")
    scanner = Scanner(clamd, SignatureFiles(appliance.layout.clamav_database_dir), store, 30)

    peaks: list[int] = []

    async def verdict():
        state = await scanner.signature_state()
        tracemalloc.start()
        try:
            return await scanner.attachment_verdict(file, bytearray(ciphertext), state)
        finally:
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()

    assert asyncio.run(verdict()).clean
    # The bytearray handed in is the one whole file; a plaintext copy would add 16 MiB more.
    assert peaks[0] < size + size // 4


def test_the_default_concurrency_fits_the_files_in_memory(tmp_path):
    def config(max_file_size_bytes: int, max_concurrent_scans: int | None = None):
        return ScannerConfig(
            "127.0.0.1",
            0,
            "http://127.0.0.1:9",
            "127.0.0.1",
            3310,
            10,
            None,
            tmp_path,
            tmp_path / "key",
            max_file_size_bytes,
            max_concurrent_scans=max_concurrent_scans,
        )

    assert config(100 << 20).concurrent_scans == 5  # 512 MiB of 100 MiB files
    assert config(1 << 30).concurrent_scans == 1  # one, however large the files
    assert config(1 << 20).concurrent_scans == 8  # no more than clamd's threads
    assert config(100 << 20, max_concurrent_scans=2).concurrent_scans == 2
    path = tmp_path / "content-scanner.json"
    path.write_text(
        json.dumps(
            {
                "listen_host": "127.0.0.1",
                "listen_port": 0,
                "synapse_url": "http://x",
                "clamd_host": "127.0.0.1",
                "clamd_port": 3310,
                "clamd_timeout_seconds": 10,
                "state_dir": str(tmp_path),
                "body_key_file": str(tmp_path / "key"),
                "max_file_size_bytes": 1 << 20,
                "max_concurrent_scans": 0,
            }
        )
    )
    with pytest.raises(ConfigError, match="max_concurrent_scans must be at least 1"):
        ScannerConfig.load(path)


def test_a_known_file_is_answered_from_the_cache_after_a_restart(
    appliance, scanner_url, synapse_url, user, caching
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


def test_a_new_signature_file_never_lets_the_old_clean_verdict_through(
    appliance, scanner_url, synapse_url, user, caching
):
    marker = b"appliance-marker-" + unique_bytes(8).hex().encode()
    plaintext = b"quarterly figures " + marker
    file = upload_encrypted(synapse_url, user, plaintext)
    assert scanner_post(scanner_url, "scan_encrypted", {"file": file}, user).json()["clean"]
    assert stored_verdicts(appliance, plaintext) == [1]
    with added_signature(appliance, marker) as name:
        before = stats(scanner_url)
        scanner_post(scanner_url, "scan_encrypted", {"file": file}, user)  # at once
        after = stats(scanner_url)
        # Scanned again, not answered from the old verdict, and whatever clamd said (it may
        # not have loaded the new file yet) is not stored under the new signatures.
        assert after["scans"] == before["scans"] + 1
        assert after["cache_hits"] == before["cache_hits"]
        assert stored_verdicts(appliance, plaintext) == []
        # The scanner asked clamd to reload (clamd itself only looks every 10 minutes).
        wait_until(
            lambda: (
                name
                in scanner_post(scanner_url, "scan_encrypted", {"file": file}, user).json()["info"]
            ),
            "detection with the new signature file",
            RELOAD_BOUND_SECONDS,
        )


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
    # The log tells an absent antivirus from a file found infected ("... is not clean: ...").
    log = appliance.layout.logfile("content-scanner").read_text(errors="replace")
    assert "refusing to answer: cannot connect to clamd" in log
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
def test_health_shows_the_scanner_and_the_signatures(appliance, scanner_url, caching):
    assert health.check_content_scanner(scanner_url).ok
    assert health_of(scanner_url)["verdicts_cached"] is True
    clamd_check = appliance.health_checks()["clamd"]
    assert clamd_check.ok and "EVALUATION signatures" in clamd_check.summary
    assert clamd_check.details["signature_version"][:12] in clamd_check.summary
    assert clamd_check.details["age_seconds"] is not None and "old" in clamd_check.summary
