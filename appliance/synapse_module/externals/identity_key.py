# SPDX-License-Identifier: AGPL-3.0-or-later
"""The identity service's ed25519 key, kept in Synapse's database.

Every ``m.room.third_party_invite`` event carries the public key of the identity service that
stored the invitation.  Ours is how the room rules tell an invitation made through this server
(which the module completes when the person registers) from one a client sent to a foreign
identity server (which nobody here could complete, and which leaked the address).  In its own
rooms the module completes invitations itself (see :mod:`.invitations`); the key signs only
for an invitation into a room of another server of the network (on the externals' server,
:mod:`.relayed_invitations`): Matrix's ``3pid/onbind`` exchange, whose signed ``mxid`` and
``token`` the inviting server checks against this key before it sends the invite.

The first process to start generates it; every process loads it at start.  Until then
:attr:`IdentityKey.public_key` is None and email invitations are refused (fail closed).
"""

from __future__ import annotations

import logging

import signedjson.key
import signedjson.sign
from synapse.module_api import LoggingTransaction, ModuleApi
from synapse.module_api.errors import Codes, SynapseError

from appliance.synapse_module.module_tables import ModuleTables

logger = logging.getLogger(__name__)

KEY_ID = "ed25519:0"
ISVALID_PATH = "/_matrix/identity/v2/pubkey/isvalid"
RETRY_MS = 5_000

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS appliance_identity_key (
        id INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
        signing_key TEXT NOT NULL
    )
    """,
)


def _load_or_create_txn(txn: LoggingTransaction, candidate: str) -> str:
    txn.execute(
        "INSERT INTO appliance_identity_key (id, signing_key) VALUES (1, ?)"
        " ON CONFLICT (id) DO NOTHING",
        (candidate,),
    )
    txn.execute("SELECT signing_key FROM appliance_identity_key WHERE id = 1")
    [(signing_key,)] = txn.fetchall()  # the row inserted above, or the one already there
    return signing_key


class IdentityKey:
    def __init__(self, api: ModuleApi) -> None:
        self._api = api
        self._tables = ModuleTables(api, "appliance_identity_key", _SCHEMA)
        self.public_key: str | None = None
        self._signing_key: signedjson.key.SigningKey | None = None

    def start(self) -> None:
        # A worker may start before the main process has created the table: it tries again.
        self._api.run_as_background_process("appliance_identity_key_load", self.load)
        self._api.looping_background_call(
            self.load, RETRY_MS, desc="appliance_identity_key_retry", run_on_all_instances=True
        )

    async def load(self) -> None:
        if self.public_key is not None:
            return
        # On a worker started first, the table comes later: wait for it quietly (fail closed).
        if not await self._tables.available(("appliance_identity_key",)):
            return
        candidate = signedjson.key.encode_signing_key_base64(
            signedjson.key.generate_signing_key(KEY_ID.split(":")[1])
        )
        encoded = await self._api.run_db_interaction(
            "appliance_identity_key_load", _load_or_create_txn, candidate
        )
        signing_key = signedjson.key.decode_signing_key_base64("ed25519", "0", encoded)
        self._signing_key = signing_key
        self.public_key = signedjson.key.encode_verify_key_base64(
            signedjson.key.get_verify_key(signing_key)
        )
        logger.info("identity service key loaded: %s", self.public_key)

    @property
    def key_validity_url(self) -> str:
        return self._api.public_baseurl.rstrip("/") + ISVALID_PATH

    def public_keys(self) -> list[dict[str, str]]:
        """The keys as ``m.room.third_party_invite`` and the identity service API list them."""
        if self.public_key is None:
            raise SynapseError(
                503, "Email invitations are not available yet: try again in a moment", Codes.UNKNOWN
            )
        return [{"public_key": self.public_key, "key_validity_url": self.key_validity_url}]

    def sign(self, signed: dict) -> dict:
        """``signed`` with this server's signature added (``signatures.<server>.ed25519:0``),
        as an identity server signs the ``signed`` object of a third-party invite."""
        if self._signing_key is None:
            raise SynapseError(
                503, "Email invitations are not available yet: try again in a moment", Codes.UNKNOWN
            )
        return signedjson.sign.sign_json(dict(signed), self._api.server_name, self._signing_key)
