# SPDX-License-Identifier: AGPL-3.0-or-later
"""Encrypted attachments (the spec's EncryptedFile): validate the metadata, check, decrypt.

AES-256 in CTR mode with the 16-byte IV as the initial counter block; ``hashes.sha256`` is the
SHA-256 of the ciphertext, checked before decrypting so a tampered file is refused. The
plaintext is made a chunk at a time, as it is hashed or streamed to clamd, so it never sits in
memory whole beside the ciphertext. Both are CPU work for a whole file: callers run them in a
thread, off the event loop.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterator
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from appliance.addresses.media_ref import InvalidMediaRef, MediaRef
from appliance.antivirus.clamd import CHUNK_SIZE
from appliance.content_scanner.errors import bad_decryption, malformed


@dataclass(frozen=True)
class EncryptedFile:
    media: MediaRef
    key: bytes  # 32 bytes
    iv: bytes  # 16 bytes
    sha256: bytes  # of the ciphertext

    @property
    def identity(self) -> str:
        """What fixes the plaintext: the ciphertext's hash, the key and the IV (hashed: the
        key itself is never stored)."""
        material = b"\0".join([str(self.media).encode(), self.sha256, self.key, self.iv])
        return hashlib.sha256(material).hexdigest()

    def verify(self, ciphertext: bytes | bytearray) -> None:
        """MCS_BAD_DECRYPTION unless these are the bytes the sender encrypted."""
        if not hmac.compare_digest(hashlib.sha256(ciphertext).digest(), self.sha256):
            raise bad_decryption("The file's SHA-256 does not match hashes.sha256")

    def plaintext_chunks(self, ciphertext: bytes | bytearray) -> Iterator[bytes]:
        """The plaintext of verified ciphertext, CHUNK_SIZE bytes at a time."""
        decryptor = Cipher(algorithms.AES(self.key), modes.CTR(self.iv)).decryptor()
        view = memoryview(ciphertext)
        for start in range(0, len(view), CHUNK_SIZE):
            yield decryptor.update(view[start : start + CHUNK_SIZE])
        decryptor.finalize()  # CTR is a stream mode: nothing is held back


def parse_encrypted_file(body: object) -> EncryptedFile:
    """The body's ``file`` (an EncryptedFile), validated; MCS_MALFORMED_JSON if it is not one."""
    file = _mapping(body, "body").get("file")
    file = _mapping(file, "file")
    key = _mapping(file.get("key"), "file.key")
    hashes = _mapping(file.get("hashes"), "file.hashes")
    if file.get("v") != "v2":
        raise malformed('file.v must be "v2"')
    if key.get("alg") != "A256CTR" or key.get("kty") != "oct" or key.get("ext") is not True:
        raise malformed('file.key must be an AES-256-CTR JWK (alg "A256CTR", kty "oct", ext true)')
    key_ops = key.get("key_ops")
    if not isinstance(key_ops, list) or not {"encrypt", "decrypt"} <= set(key_ops):
        raise malformed('file.key.key_ops must contain "encrypt" and "decrypt"')
    url = file.get("url")
    if not isinstance(url, str):
        raise malformed("file.url must be an mxc:// URL")
    try:
        media = MediaRef.from_mxc(url)
    except InvalidMediaRef as error:
        raise malformed(f"file.url: {error}") from None
    return EncryptedFile(
        media=media,
        key=_decode(key.get("k"), "file.key.k", 32),
        iv=_decode(file.get("iv"), "file.iv", 16),
        sha256=_decode(hashes.get("sha256"), "file.hashes.sha256", 32),
    )


def _mapping(value: object, where: str) -> dict:
    if not isinstance(value, dict):
        raise malformed(f"{where} must be a JSON object")
    return value


def _decode(value: object, where: str, size: int) -> bytes:
    """Unpadded base64, standard or URL-safe (the JWK's k is URL-safe)."""
    if not isinstance(value, str):
        raise malformed(f"{where} must be a base64 string")
    text = value.replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise malformed(f"{where} is not valid base64") from None
    if len(raw) != size:
        raise malformed(f"{where} must be {size} bytes, not {len(raw)}")
    return raw
