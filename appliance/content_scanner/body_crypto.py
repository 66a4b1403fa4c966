# SPDX-License-Identifier: AGPL-3.0-or-later
"""Encrypted request bodies (``encrypted_body``): the metadata of an attachment, encrypted by
the client to this scanner's public key with vodozemac's PkEncryption (libolm's "pk" scheme),
so a TLS-terminating proxy in between never sees attachment keys.

The private key is made on first start and kept in a 0600 file, so the public key clients
have cached stays valid across restarts.
"""

from __future__ import annotations

import json
from pathlib import Path

import vodozemac

from appliance.config.secrets_store import read_secret, write_private_file
from appliance.content_scanner.errors import bad_decryption, malformed


class BodyDecryptor:
    def __init__(self, key_file: Path):
        if key_file.exists():
            secret = vodozemac.Curve25519SecretKey.from_base64(read_secret(key_file))
        else:
            secret = vodozemac.Curve25519SecretKey()
            write_private_file(key_file, secret.to_base64(), exclusive=True)
        self._decryption = vodozemac.PkDecryption.from_key(secret)

    @property
    def public_key(self) -> str:
        return self._decryption.public_key.to_base64()

    def decrypt(self, encrypted_body: object) -> object:
        """The decrypted body, parsed as JSON; MCS_BAD_DECRYPTION if it cannot be decrypted."""
        if not isinstance(encrypted_body, dict):
            raise malformed("encrypted_body must be a JSON object")
        parts = [encrypted_body.get(name) for name in ("ciphertext", "mac", "ephemeral")]
        ciphertext, mac, ephemeral = parts
        if not (
            isinstance(ciphertext, str) and isinstance(mac, str) and isinstance(ephemeral, str)
        ):
            raise malformed("encrypted_body needs ciphertext, mac and ephemeral (base64 strings)")
        try:
            plaintext = self._decryption.decrypt(
                vodozemac.Message.from_base64(ciphertext, mac, ephemeral)
            )
        except ValueError as error:  # vodozemac's decode and MAC errors are ValueErrors
            raise bad_decryption(f"encrypted_body could not be decrypted: {error}") from None
        try:
            return json.loads(plaintext)
        except ValueError:
            raise malformed("the decrypted encrypted_body is not JSON") from None
