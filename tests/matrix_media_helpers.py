# SPDX-License-Identifier: AGPL-3.0-or-later
"""Media for the antivirus tests: users, uploads, encrypted attachments, and clamd's state.

Everything goes over real HTTP to the shared appliance's Synapse and content scanner, and to
its real clamd. The helpers that change clamd (stop it, add a signature) restore it on exit,
so the appliance is healthy for the tests that follow.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import os
import secrets
import time
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from appliance.antivirus.clamd import ClamdClient
from appliance.evaluation.supervisor import running_process, start, stop, wait_until_ready

TIMEOUT = 30
MEDIA_PROXY = "/_matrix/media_proxy/unstable"
# The EICAR test string, assembled at run time so this file is not itself "infected".
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


@dataclass(frozen=True)
class User:
    user_id: str
    token: str

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}


def register_user(synapse_url: str, shared_secret: str, prefix: str = "media") -> User:
    """A new non-admin user, made with Synapse's shared-secret admin registration."""
    endpoint = f"{synapse_url}/_synapse/admin/v1/register"
    username, password = f"{prefix}-{secrets.token_hex(4)}", "Aa1-" + secrets.token_urlsafe(16)
    nonce = requests.get(endpoint, timeout=TIMEOUT).json()["nonce"]
    message = b"\x00".join(part.encode() for part in (nonce, username, password, "notadmin"))
    mac = hmac.new(shared_secret.encode(), message, hashlib.sha1).hexdigest()
    body = {"nonce": nonce, "username": username, "password": password, "admin": False, "mac": mac}
    response = requests.post(endpoint, json=body, timeout=TIMEOUT)
    response.raise_for_status()
    return User(response.json()["user_id"], response.json()["access_token"])


def upload(
    synapse_url: str,
    user: User,
    data: bytes,
    content_type: str = "application/octet-stream",
    http: requests.Session | None = None,
):
    """POST the bytes to the media repository; `http` for a session of one's own (its TLS)."""
    return (http or requests).post(
        f"{synapse_url}/_matrix/media/v3/upload",
        data=data,
        headers={**user.headers, "Content-Type": content_type},
        timeout=TIMEOUT,
    )


def upload_ok(synapse_url: str, user: User, data: bytes, **kwargs) -> str:
    """Upload bytes that must be accepted; return their mxc:// URI."""
    response = upload(synapse_url, user, data, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()["content_uri"]


def download(synapse_url: str, user: User, mxc: str) -> requests.Response:
    server_name, media_id = mxc.removeprefix("mxc://").split("/")
    return requests.get(
        f"{synapse_url}/_matrix/client/v1/media/download/{server_name}/{media_id}",
        headers=user.headers,
        timeout=TIMEOUT,
    )


def unique_bytes(size: int = 4096) -> bytes:
    """Content no earlier test has sent, so no cached verdict applies to it."""
    return b"appliance test file " + secrets.token_bytes(size)


def zipped(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


def _unpadded(raw: bytes, urlsafe: bool = False) -> str:
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    return encode(raw).decode().rstrip("=")


def encrypt_attachment(plaintext: bytes) -> tuple[bytes, dict]:
    """(ciphertext, EncryptedFile without "url"), as a Matrix client encrypts an attachment."""
    key, iv = os.urandom(32), os.urandom(8) + bytes(8)  # the low 64 bits are the counter
    encryptor = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    ciphertext = encryptor.update(plaintext) + encryptor.finalize()
    info = {
        "v": "v2",
        "key": {
            "alg": "A256CTR",
            "ext": True,
            "k": _unpadded(key, urlsafe=True),
            "key_ops": ["encrypt", "decrypt"],
            "kty": "oct",
        },
        "iv": _unpadded(iv),
        "hashes": {"sha256": _unpadded(hashlib.sha256(ciphertext).digest())},
    }
    return ciphertext, info


def upload_encrypted(synapse_url: str, user: User, plaintext: bytes) -> dict:
    """Encrypt, upload the ciphertext, and return the EncryptedFile a client would send."""
    ciphertext, info = encrypt_attachment(plaintext)
    return {**info, "url": upload_ok(synapse_url, user, ciphertext)}


def scanner_post(scanner_url: str, endpoint: str, body, user: User | None = None):
    return requests.post(
        f"{scanner_url}{MEDIA_PROXY}/{endpoint}",
        json=body,
        headers=user.headers if user else {},
        timeout=TIMEOUT,
    )


def scanner_get(scanner_url: str, endpoint: str, user: User | None = None, **params):
    return requests.get(
        f"{scanner_url}{MEDIA_PROXY}/{endpoint}",
        params=params,
        headers=user.headers if user else {},
        timeout=TIMEOUT,
    )


# clamd's state ---------------------------------------------------------------------------------
def _spec(appliance, name: str):
    return next(spec for spec in appliance.specs() if spec.name == name)


def restart_service(appliance, name: str) -> None:
    spec = _spec(appliance, name)
    stop(spec)
    reason = wait_until_ready(spec, start(spec))
    assert reason is None, f"{name} did not come back: {reason}"


@contextmanager
def clamd_stopped(appliance):
    """clamd is down inside the block, and running and answering again after it."""
    spec = _spec(appliance, "clamd")
    assert stop(spec), "clamd was not running"
    try:
        yield
    finally:
        if running_process(spec) is None:
            reason = wait_until_ready(spec, start(spec))
            assert reason is None, f"clamd did not come back: {reason}"


def wait_until(condition, what: str, seconds: float = 60) -> None:
    """Poll `condition` until it is true; fail, saying `what` did not happen, after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {seconds} s"
        time.sleep(0.2)


# clamd logs this line when it swaps in a database it has just loaded (clamd 1.4).
CLAMD_ACTIVATED = "Activating the newly loaded database"
# Generous: a reload of a few signatures takes well under a second, but minutes on a 2-core
# machine at load 6 are possible; the loop ends at the event, never at this bound.
RELOAD_BOUND_SECONDS = 300


def _activations(log: Path) -> int:
    return log.read_text(errors="replace").count(CLAMD_ACTIVATED)


def reload_until(appliance, clamd: ClamdClient, data: bytes, *, detected: bool) -> None:
    """Make clamd reload until it detects `data` (or no longer does), waiting on its events.

    RELOAD is answered at once and a RELOAD that comes while a reload runs is merged into it,
    though that reload may have read the files before they changed (the module and the scanner
    send RELOADs too). So: RELOAD, wait for clamd to log that it activated a database, look at
    the verdict, and RELOAD again if that database was read too early.
    """
    log = appliance.layout.logfile("clamd")
    deadline = time.monotonic() + RELOAD_BOUND_SECONDS
    while True:
        before = _activations(log)
        clamd.reload()
        while _activations(log) == before:
            assert time.monotonic() < deadline, (
                f"clamd logged no database activation within {RELOAD_BOUND_SECONDS} s"
            )
            time.sleep(0.2)
        # The swap follows the log line: a few looks before asking for another reload.
        for _ in range(10):
            if clamd.scan_bytes(data).clean != detected:
                return
            time.sleep(0.1)
        assert time.monotonic() < deadline, (
            f"clamd's reloads did not {'add' if detected else 'remove'} the signature "
            f"within {RELOAD_BOUND_SECONDS} s"
        )


@contextmanager
def added_signature(appliance, marker: bytes):
    """A signature file detecting `marker` is in clamd's directory inside the block, as an
    administrator drops one in: nobody tells clamd (the module and the scanner must)."""
    name = f"Appliance.Test.Marker-{marker.hex()[:12]}"
    path = Path(appliance.layout.clamav_database_dir) / f"appliance-test-{marker.hex()[:12]}.ndb"
    path.write_text(f"{name}:0:*:{marker.hex()}\n")
    try:
        yield name
    finally:
        path.unlink()


@contextmanager
def extra_signature(appliance, clamd: ClamdClient, marker: bytes):
    """A signature update: clamd also detects `marker` inside the block, and no longer after."""
    try:
        with added_signature(appliance, marker):
            reload_until(appliance, clamd, marker, detected=True)
            yield
    finally:
        reload_until(appliance, clamd, marker, detected=False)
