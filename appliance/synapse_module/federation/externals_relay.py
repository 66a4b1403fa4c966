# SPDX-License-Identifier: AGPL-3.0-or-later
"""An unknown address invited on the network's externals' server (issue 13, points 4 and 5).

In a network that has an externals' server (the peer whose role is ``externals``), an address of
no domain of the network gets its external account there, never here.  This server then does
what a standard Matrix client does with ``id_server`` set to that server, on the inviter's
behalf, with the module's identity service there (``externals/identity_server.py``):

1. an OpenID token of the inviter, as ``/openid/request_token`` gives a client;
2. ``POST {base_url}/_matrix/identity/v2/account/register`` with it: the externals' server asks
   this one whose token it is (federation ``openid/userinfo``) and checks this server's role;
3. ``POST .../store-invite``: the externals' server stores the invitation, mails it with its own
   registration link, and answers its token, its public keys and the masked address.

The room's ``m.room.third_party_invite`` then carries that token and those keys (sent by Synapse
once this server's store-invite has answered, or by the invite endpoint).  When the person has
registered there and their address is bound, the externals' server calls
``/_matrix/federation/v1/3pid/onbind`` here and Synapse itself turns the third-party invite into
an invite of ``@them:externals-server``, checking the signature with the event's key.

Preferred to refusing with "use that identity server" because it works for a client that knows
nothing of the network (Element's invite dialog, the appliance's own endpoint), and the address
still reaches only servers of the network.

Failing closed: the externals' server unreachable, too slow (:data:`RELAY_SECONDS`) or answering
something that is not an invitation is a 502 naming it, before anything is sent into the room
or stored here.  Its refusals (its limits on invitation mails, an address it will not take)
reach the inviter with its errcode and message.  An address that already has an account there
comes back as that account (:attr:`Relayed.existing`), which is invited by its Matrix ID.

The room rules accept the externals' server's key beside this server's own in an
``m.room.third_party_invite`` (:meth:`ExternalsRelay.accepted_keys`): fetched from its
``pubkey`` endpoint and kept, since the module never rotates it; fetched again when an event
names another key (the externals' server restored or reinstalled), and not more than once per
KEY_RETRY_SECONDS after a failure or a mismatch, so events arriving while that server is down
do not each wait on it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Collection
from dataclasses import dataclass

from synapse.module_api import ModuleApi, make_deferred_yieldable, run_in_background
from synapse.module_api.errors import Codes, SynapseError
from twisted.internet import reactor

from appliance.addresses.email_address import EmailAddress
from appliance.synapse_module.accounts.registration import AllowlistSource, Verdict, decide
from appliance.synapse_module.federation.peers import Network, Peer, server_of
from appliance.synapse_module.synapse_internals import HttpResponseException, SynapseInternals

logger = logging.getLogger(__name__)

IDENTITY_V2 = "/_matrix/identity/v2"
KEY_PATH = f"{IDENTITY_V2}/pubkey/ed25519:0"
# One relay (token, register, store-invite, which mails) ends by then, or fails closed.
RELAY_SECONDS = 20.0
KEY_SECONDS = 5.0  # fetching the externals' server's key, for a room event that waits on it
KEY_RETRY_SECONDS = 60.0  # after a failed or mismatched fetch, the key is not asked again before
OPENID_VALID_MS = 60_000  # used at once, by one register call
UNREACHABLE = (
    "The network's externals' server {server} holds the accounts of externals and cannot "
    "store this invitation right now: nothing was sent, try again later"
)
REFUSED_THERE = "The network's externals' server {server} refused this invitation: {reason}"


@dataclass(frozen=True)
class Relayed:
    """The externals' server's answer: its invitation, or the account the address has there."""

    server: str
    token: str | None = None
    public_keys: tuple[dict, ...] = ()
    display_name: str | None = None
    existing: str | None = None  # the address's account there: invite it by its Matrix ID

    def third_party_invite_content(self) -> dict:
        """The content of the room's ``m.room.third_party_invite``, as Synapse writes it."""
        return {
            "display_name": self.display_name,
            "public_keys": list(self.public_keys),
            "key_validity_url": self.public_keys[0]["key_validity_url"],
            "public_key": self.public_keys[0]["public_key"],
        }

    def store_invite_answer(self) -> dict:
        """What this server's own store-invite answers Synapse (the externals' server's)."""
        return {"token": self.token, **self.third_party_invite_content()}


class ExternalsRelay:
    def __init__(
        self,
        api: ModuleApi,
        network: Network,
        allowlist: AllowlistSource,
        internals: SynapseInternals,
    ) -> None:
        self._api = api
        self._network = network
        self._allowlist = allowlist
        self._internals = internals
        self._key: str | None = None  # the externals' server's, once fetched
        self._next_fetch = 0.0  # time.monotonic() before which the key is not fetched again

    def server_for(self, email: EmailAddress) -> Peer | None:
        """The externals' server that takes this address's invitation, or None: the network
        has none, or the address is this server's own or a peer's (or contested)."""
        server = self._network.externals_server
        if server is None:
            return None
        if decide(email.address, self._allowlist()).verdict is not Verdict.NOT_ALLOWED:
            return None  # allowed here, or undecidable (refused elsewhere, with the reason)
        if self._network.claimants_of(email.domain):
            return None  # a peer's agent, or a domain in dispute: invitations.py says which
        return server

    async def store_invite(
        self,
        server: Peer,
        *,
        inviter: str,
        email: EmailAddress,
        room_id: str,
        room_name: str | None = None,
        inviter_name: str | None = None,
    ) -> Relayed:
        """Have the externals' server store and mail the invitation (see the module's doc).

        Raises:
            SynapseError: 502 ``M_UNKNOWN`` naming the server when it cannot be asked or does
                not answer an invitation; its own refusal (4xx) with its errcode otherwise.
        """
        relaying = run_in_background(
            self._relay, server, inviter, email, room_id, room_name, inviter_name
        )
        relaying.addTimeout(RELAY_SECONDS, reactor)
        try:
            return await make_deferred_yieldable(relaying)
        except SynapseError:
            raise
        except HttpResponseException as error:
            raise _their_refusal(server, error) from None
        except Exception as error:  # unreachable, too slow, not an identity service
            logger.warning("cannot relay an invitation to %s: %r", server.server_name, error)
            raise SynapseError(
                502, UNREACHABLE.format(server=server.server_name), Codes.UNKNOWN
            ) from None

    async def _relay(
        self,
        server: Peer,
        inviter: str,
        email: EmailAddress,
        room_id: str,
        room_name: str | None,
        inviter_name: str | None,
    ) -> Relayed:
        base = server.base_url.rstrip("/") + IDENTITY_V2
        now = self._api.get_current_time_msec()
        openid = await self._internals.issue_openid_token(inviter, now + OPENID_VALID_MS)
        registered = await self._api.http_client.post_json_get_json(
            f"{base}/account/register",
            {
                "access_token": openid,
                "token_type": "Bearer",
                "matrix_server_name": self._api.server_name,
                "expires_in": OPENID_VALID_MS // 1000,
            },
        )
        token = registered.get("token") if isinstance(registered, dict) else None
        if not isinstance(token, str):
            raise ValueError("account/register answered no token")
        body = {
            "medium": "email",
            "address": email.address,
            "room_id": room_id,
            "sender": inviter,
            **({"room_name": room_name} if room_name else {}),
            **({"sender_display_name": inviter_name} if inviter_name else {}),
        }
        try:
            stored = await self._api.http_client.post_json_get_json(
                f"{base}/store-invite", body, headers={"Authorization": [f"Bearer {token}"]}
            )
        except HttpResponseException as error:
            existing = _existing_account(error, server)
            if existing is None:
                raise
            return Relayed(server.server_name, existing=existing)
        relayed = _relayed(server, stored)
        logger.info("%s's invitation into %s stored on %s", inviter, room_id, server.server_name)
        return relayed

    async def accepted_keys(self, wanted: Collection[str] = ()) -> frozenset[str]:
        """The externals' server's identity key, which the room rules accept in an
        ``m.room.third_party_invite`` naming `wanted` keys (empty if there is none, or it
        cannot be fetched now: such an event is then refused, fail closed)."""
        server = self._network.externals_server
        if server is None:
            return frozenset()
        known = frozenset({self._key}) if self._key else frozenset()
        if known and (not wanted or known & set(wanted)):
            return known
        if time.monotonic() < self._next_fetch:
            return known
        fetching = run_in_background(
            self._api.http_client.get_json, server.base_url.rstrip("/") + KEY_PATH
        )
        fetching.addTimeout(KEY_SECONDS, reactor)  # an event waits on it: bounded
        try:
            answer = await make_deferred_yieldable(fetching)
        except Exception as error:
            logger.warning("cannot fetch %s's identity key: %r", server.server_name, error)
            self._next_fetch = time.monotonic() + KEY_RETRY_SECONDS
            return known
        key = answer.get("public_key") if isinstance(answer, dict) else None
        if isinstance(key, str) and key:
            self._key = key
        if not self._key or (wanted and self._key not in wanted):
            self._next_fetch = time.monotonic() + KEY_RETRY_SECONDS
        return frozenset({self._key}) if self._key else frozenset()


def _relayed(server: Peer, stored: object) -> Relayed:
    """The store-invite answer, checked: its token and keys go into a room event."""
    if not isinstance(stored, dict):
        raise ValueError("store-invite answered no object")
    token, keys, name = stored.get("token"), stored.get("public_keys"), stored.get("display_name")
    if (
        not isinstance(token, str)
        or not isinstance(name, str)
        or not isinstance(keys, list)
        or not keys
        or not all(
            isinstance(k, dict)
            and isinstance(k.get("public_key"), str)
            and isinstance(k.get("key_validity_url"), str)
            for k in keys
        )
    ):
        raise ValueError("store-invite answered no invitation")
    return Relayed(server.server_name, token, tuple(keys), name)


def _body_of(error: HttpResponseException) -> dict:
    try:
        body = json.loads(error.response)
    except (ValueError, TypeError):
        return {}
    return body if isinstance(body, dict) else {}


def _existing_account(error: HttpResponseException, server: Peer) -> str | None:
    body = _body_of(error)
    mxid = body.get("mxid")
    if body.get("errcode") == Codes.THREEPID_IN_USE and isinstance(mxid, str):
        return mxid if server_of(mxid) == server.server_name else None
    return None


def _their_refusal(server: Peer, error: HttpResponseException) -> SynapseError:
    """A refusal of the externals' server, passed on with its errcode; anything else is 502."""
    body = _body_of(error)
    errcode, reason = body.get("errcode"), body.get("error")
    if not 400 <= error.code < 500 or not isinstance(errcode, str) or not isinstance(reason, str):
        logger.warning("%s answered a relayed invitation with %d", server.server_name, error.code)
        return SynapseError(502, UNREACHABLE.format(server=server.server_name), Codes.UNKNOWN)
    extra = {k: body[k] for k in ("retry_after_ms",) if isinstance(body.get(k), int)}
    return SynapseError(
        error.code,
        REFUSED_THERE.format(server=server.server_name, reason=reason),
        errcode,
        additional_fields=extra or None,
    )
