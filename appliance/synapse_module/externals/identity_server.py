# SPDX-License-Identifier: AGPL-3.0-or-later
"""The identity service that standard clients and Synapse need for email invitations.

A client invites by email with ``POST /rooms/{id}/invite {id_server, id_access_token, medium,
address}``; Synapse then calls the identity server ``https://{id_server}/_matrix/identity/v2``.
This module serves the part of that API the invitation needs, on the homeserver itself, so the
address never leaves the box, or the network for an address whose account its externals' server
holds (``default_identity_server`` points clients here):

``GET  /_matrix/identity/v2``                    ``{}`` (the service exists)
``GET  .../terms``, ``POST .../terms``           no terms to accept
``POST .../account/register``                    an OpenID token from ``/openid/request_token``
                                                 becomes an identity service token; a token of
                                                 an agents peer's user is checked with that peer
                                                 (federation ``openid/userinfo``), as any
                                                 identity server checks one
``GET  .../account``, ``POST .../account/logout``  the token's user; forget the token
``GET  .../hash_details``, ``POST .../lookup``   which account an address belongs to; only the
                                                 ``none`` algorithm: the identity service is the
                                                 homeserver, which knows every address already;
                                                 an address of a peer's domain is asked of that
                                                 peer (so Synapse invites its account there), an
                                                 unknown one of the network's externals' server
``POST .../store-invite``                        store and mail an invitation (:mod:`.invitations`);
                                                 an address already invited into the room while
                                                 that invitation is pending gets it back (its
                                                 token: Synapse rewrites the same room event),
                                                 and no second mail.  In a network with an
                                                 externals' server, an address of no domain of
                                                 the network is stored there instead, its answer
                                                 passed on (:mod:`...federation.externals_relay`);
                                                 an agents peer's agent's invitation into its own
                                                 server's room is stored here
                                                 (:mod:`.relayed_invitations`)
``GET  .../pubkey/isvalid``, ``.../pubkey/ed25519:0``  the key in ``m.room.third_party_invite``

Tokens are random, stored hashed (SHA-256) with their user, and accepted as
``Authorization: Bearer`` or ``?access_token=`` (Synapse uses both).  Externals get no answer
from ``lookup``: they must not learn which addresses have an account.  Refusals in
``store-invite`` come too late for a clear message (Synapse turns them into a 500): the same
rules already refused in ``user_may_send_3pid_invite`` (the limits on invitation mails with 429
``M_LIMIT_EXCEEDED`` and ``retry_after_ms``); here they only guard the endpoint, and the limits
are decided for good, atomically, when the invitation is stored.
Until the token table is there (a worker may start before the main process has created it),
the calls that use a token answer 503 ``M_UNKNOWN`` "try again in a moment", not a 500.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Awaitable, Callable

from synapse.module_api import (
    DirectServeJsonResource,
    LoggingTransaction,
    ModuleApi,
    SynapseRequest,
    make_deferred_yieldable,
    parse_json_object_from_request,
    run_in_background,
)
from synapse.module_api.errors import Codes, SynapseError
from twisted.internet import defer

from appliance.addresses.email_address import EmailAddress
from appliance.synapse_module.admin_api.request_args import query_values
from appliance.synapse_module.externals.identity_key import KEY_ID, IdentityKey
from appliance.synapse_module.externals.invitations import (
    ONLY_MEMBERS_WHO_MAY_INVITE,
    Invitations,
    canonical_email,
    masked,
    new_token,
)
from appliance.synapse_module.externals.policy import ExternalDirectory
from appliance.synapse_module.externals.relayed_invitations import RelayedInvitations
from appliance.synapse_module.externals.store import Invitation
from appliance.synapse_module.federation.externals_relay import ExternalsRelay
from appliance.synapse_module.federation.peers import Network, server_of
from appliance.synapse_module.module_tables import ModuleTables
from appliance.synapse_module.synapse_internals import SynapseInternals

logger = logging.getLogger(__name__)

IDENTITY_PATH = "/_matrix/identity/v2"
PEPPER = "appliance"  # required by the API; unused by the "none" algorithm
MAX_LOOKUPS = 100
NOT_READY = "The identity service is starting up on this server: try again in a moment"
USERINFO_MS = 10_000  # a peer's answer on an OpenID token
NOT_SERVED = "This identity service serves only {server} and the agents' servers of its network"

_TABLES = ("appliance_identity_tokens",)

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS appliance_identity_tokens (
        token_hash TEXT NOT NULL PRIMARY KEY,
        user_id TEXT NOT NULL,
        created_at BIGINT NOT NULL
    )
    """,
)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _insert_token_txn(txn: LoggingTransaction, token_hash: str, user_id: str, now_ms: int) -> None:
    txn.execute(
        "INSERT INTO appliance_identity_tokens (token_hash, user_id, created_at) VALUES (?, ?, ?)",
        (token_hash, user_id, now_ms),
    )


def _user_of_token_txn(txn: LoggingTransaction, token_hash: str) -> str | None:
    txn.execute("SELECT user_id FROM appliance_identity_tokens WHERE token_hash = ?", (token_hash,))
    row = txn.fetchone()
    return row[0] if row else None


def _delete_token_txn(txn: LoggingTransaction, token_hash: str) -> None:
    txn.execute("DELETE FROM appliance_identity_tokens WHERE token_hash = ?", (token_hash,))


class IdentityTokens:
    def __init__(self, api: ModuleApi) -> None:
        self._api = api
        self._tables = ModuleTables(api, "appliance_identity_tokens", _SCHEMA)

    def start(self) -> None:
        self._tables.start()

    async def issue(self, user_id: str) -> str:
        token = secrets.token_urlsafe(32)
        await self._tables.ensure(_TABLES, NOT_READY)
        now = self._api.get_current_time_msec()
        await self._api.run_db_interaction(
            "appliance_identity_token_issue", _insert_token_txn, _hash(token), user_id, now
        )
        return token

    async def user_of(self, token: str) -> str | None:
        await self._tables.ensure(_TABLES, NOT_READY)
        return await self._api.run_db_interaction(
            "appliance_identity_token_user", _user_of_token_txn, _hash(token)
        )

    async def revoke(self, token: str) -> None:
        await self._tables.ensure(_TABLES, NOT_READY)
        await self._api.run_db_interaction(
            "appliance_identity_token_revoke", _delete_token_txn, _hash(token)
        )


def _token_of(request: SynapseRequest) -> str | None:
    header = request.getHeader("Authorization")
    if header and header.startswith("Bearer "):
        return header.removeprefix("Bearer ").strip()
    values = query_values(request, "access_token")
    return values[0].decode("ascii", errors="replace") if values else None


def _unrecognized() -> SynapseError:
    return SynapseError(404, "Unknown identity service endpoint", Codes.UNRECOGNIZED)


Handler = Callable[[SynapseRequest], Awaitable[dict]]


class IdentityServiceResource(DirectServeJsonResource):
    isLeaf = True  # routes every path below IDENTITY_PATH itself

    def __init__(
        self,
        api: ModuleApi,
        tokens: IdentityTokens,
        key: IdentityKey,
        invitations: Invitations,
        directory: ExternalDirectory,
        internals: SynapseInternals,
        *,
        network: Network | None = None,
        relay: ExternalsRelay | None = None,
        relayed: RelayedInvitations | None = None,
    ) -> None:
        super().__init__()
        self._api = api
        self._tokens = tokens
        self._key = key
        self._invitations = invitations
        self._directory = directory
        self._internals = internals
        # In a network: whose OpenID tokens are checked with their server (agents peers'),
        # where unknown addresses are stored (the externals' server), and the invitations
        # agents peers store here for their rooms.
        self._network = network
        self._relay = relay
        self._relayed = relayed
        self._get: dict[str, Handler] = {
            "": self._status,
            "/terms": self._terms,
            "/account": self._account,
            "/hash_details": self._hash_details,
            "/pubkey/isvalid": self._key_is_valid,
            "/pubkey/ephemeral/isvalid": self._ephemeral_key_is_valid,
            f"/pubkey/{KEY_ID}": self._public_key,
        }
        self._post: dict[str, Handler] = {
            "/terms": self._accept_terms,
            "/account/register": self._register,
            "/account/logout": self._logout,
            "/lookup": self._lookup,
            "/store-invite": self._store_invite,
        }

    def register(self) -> None:
        """Serve IDENTITY_PATH (on every process: nothing here is main-only)."""
        self._api.register_web_resource(IDENTITY_PATH, self)

    async def _async_render_GET(self, request: SynapseRequest) -> tuple[int, dict]:
        return 200, await self._route(self._get, request)

    async def _async_render_POST(self, request: SynapseRequest) -> tuple[int, dict]:
        return 200, await self._route(self._post, request)

    async def _route(self, routes: dict[str, Handler], request: SynapseRequest) -> dict:
        path = request.path.decode("utf-8", errors="replace").removeprefix(IDENTITY_PATH)
        handler = routes.get(path.rstrip("/"))
        if handler is None:
            raise _unrecognized()
        return await handler(request)

    async def _user(self, request: SynapseRequest) -> str:
        token = _token_of(request)
        user_id = await self._tokens.user_of(token) if token else None
        if user_id is None:
            raise SynapseError(
                401,
                "Register with this identity service first (account/register)",
                Codes.UNAUTHORIZED,
            )
        return user_id

    # --- service and account ---------------------------------------------------------------

    async def _status(self, request: SynapseRequest) -> dict:
        return {}

    async def _terms(self, request: SynapseRequest) -> dict:
        return {"policies": {}}

    async def _accept_terms(self, request: SynapseRequest) -> dict:
        await self._user(request)
        return {}

    async def _register(self, request: SynapseRequest) -> dict:
        body = parse_json_object_from_request(request)
        server, openid = body.get("matrix_server_name"), body.get("access_token")
        if server == self._api.server_name:
            now = self._api.get_current_time_msec()
            user_id = (
                await self._internals.user_of_openid_token(openid, now)
                if isinstance(openid, str)
                else None
            )
        elif (
            isinstance(server, str)
            and self._network is not None
            and self._network.role_of(server) == "agents"
        ):
            user_id = await self._peer_user(server, openid)
        else:
            raise SynapseError(
                401, NOT_SERVED.format(server=self._api.server_name), Codes.UNAUTHORIZED
            )
        if user_id is None:
            raise SynapseError(401, "The OpenID token is unknown or expired", Codes.UNKNOWN_TOKEN)
        token = await self._tokens.issue(user_id)
        # "token" is the specification's name; older clients read "access_token".
        return {"token": token, "access_token": token}

    async def _peer_user(self, server: str, openid: object) -> str | None:
        """Whose OpenID token this is, as its server says (``openid/userinfo``), or None."""
        if not isinstance(openid, str):
            return None
        try:
            answer = await self._internals.openid_userinfo(server, openid, USERINFO_MS)
        except Exception as error:  # refused (unknown token), unreachable: not authenticated
            logger.info("%s did not vouch for an OpenID token: %r", server, error)
            return None
        sub = answer.get("sub") if isinstance(answer, dict) else None
        return sub if isinstance(sub, str) and server_of(sub) == server else None

    async def _account(self, request: SynapseRequest) -> dict:
        return {"user_id": await self._user(request)}

    async def _logout(self, request: SynapseRequest) -> dict:
        await self._user(request)  # refuses a request without a valid token
        token = _token_of(request)
        if token is not None:
            await self._tokens.revoke(token)
        return {}

    # --- lookup --------------------------------------------------------------------------------

    async def _hash_details(self, request: SynapseRequest) -> dict:
        await self._user(request)
        return {"algorithms": ["none"], "lookup_pepper": PEPPER}

    async def _lookup(self, request: SynapseRequest) -> dict:
        user_id = await self._user(request)
        body = parse_json_object_from_request(request)
        if body.get("algorithm") != "none":
            raise SynapseError(400, "Only the 'none' algorithm is supported", Codes.INVALID_PARAM)
        if body.get("pepper") != PEPPER:
            raise SynapseError(400, "Unknown pepper", "M_INVALID_PEPPER")
        addresses = body.get("addresses")
        if not isinstance(addresses, list) or len(addresses) > MAX_LOOKUPS:
            raise SynapseError(
                400, f"addresses must be a list of at most {MAX_LOOKUPS}", Codes.INVALID_PARAM
            )
        if await self._directory.is_external(user_id):
            return {"mappings": {}}
        # The addresses are looked up in parallel, the peers' answers within one deadline.
        deadline = self._invitations.peer_deadline()
        looking = [
            run_in_background(self._account_of, entry, user_id, deadline) for entry in addresses
        ]
        try:
            found = await make_deferred_yieldable(defer.gatherResults(looking, consumeErrors=True))
        except defer.FirstError as error:
            error.subFailure.raiseException()  # the asker's limit (429): the others map nothing
        return {"mappings": {e: f for e, f in zip(addresses, found, strict=True) if f}}

    async def _account_of(self, entry: object, asker: str, deadline: float | None) -> str | None:
        address, _, medium = entry.rpartition(" ") if isinstance(entry, str) else ("", "", "")
        if medium != "email":
            return None
        try:
            email = canonical_email(address)
            on_peer = await self._invitations.peer_account(email, asker=asker, deadline=deadline)
        except SynapseError as error:
            if error.code == 429:
                raise
            # A peer that cannot tell maps nothing: the invitation then stops, with the
            # reason, at user_may_send_3pid_invite, which asks again.
            return None
        if on_peer is not None:
            return on_peer[1]
        return await self._internals.user_of_email(email.address)

    # --- invitations ---------------------------------------------------------------------------

    async def _store_invite(self, request: SynapseRequest) -> dict:
        user_id = await self._user(request)
        body = parse_json_object_from_request(request)
        if body.get("medium") != "email":
            raise SynapseError(400, "Only email addresses can be invited", Codes.UNRECOGNIZED)
        sender, room_id = body.get("sender"), body.get("room_id")
        if sender != user_id or not isinstance(room_id, str):
            raise SynapseError(403, "You can only invite in your own name", Codes.FORBIDDEN)
        email = canonical_email(body.get("address"))
        bound = await self._internals.user_of_email(email.address)
        if bound is not None:
            raise SynapseError(
                400,
                "This address has an account already",
                Codes.THREEPID_IN_USE,
                additional_fields={"mxid": bound},
            )
        if not self._api.is_mine(sender):  # an agents peer's agent, for its server's room
            if self._relayed is None:
                raise SynapseError(403, "You can only invite in your own name", Codes.FORBIDDEN)
            return self._answer(await self._relayed.store(sender, email, room_id, body), email)
        await self._check_inviter(sender, email.address, room_id)
        server = self._relay.server_for(email) if self._relay is not None else None
        if server is not None and self._relay is not None:
            # That server mails at once: what this room would refuse is refused first.
            if problem := await self._invitations.relay_problem(sender, room_id):
                raise SynapseError(403, problem, Codes.FORBIDDEN)
            relayed = await self._relay.store_invite(
                server,
                inviter=sender,
                email=email,
                room_id=room_id,
                room_name=_text(body.get("room_name")),
                inviter_name=_text(body.get("sender_display_name")),
            )
            if relayed.existing is not None:
                raise SynapseError(
                    400,
                    f"This address has an account already on {server.server_name}",
                    Codes.THREEPID_IN_USE,
                    additional_fields={"mxid": relayed.existing},
                )
            return relayed.store_invite_answer()
        invitation = await self._invitations.create(sender, email, room_id, new_token())
        return self._answer(invitation, email)

    def _answer(self, invitation: Invitation, email: EmailAddress) -> dict:
        keys = self._key.public_keys()
        return {
            "token": invitation.token,
            "public_keys": keys,
            "public_key": keys[0]["public_key"],
            "display_name": masked(email),
        }

    async def _check_inviter(self, sender: str, address: str, room_id: str) -> None:
        # Synapse sends the room event after this answer: whoever could not send it must not
        # get an invitation stored and mailed first.
        problem = await self._invitations.problem_with(sender, address, room_id)
        if problem is not None and not await self._api.is_user_admin(sender):
            raise SynapseError(403, problem, Codes.FORBIDDEN)
        if not await self._invitations.member_may_invite(sender, room_id):
            raise SynapseError(403, ONLY_MEMBERS_WHO_MAY_INVITE, Codes.FORBIDDEN)

    # --- key ---------------------------------------------------------------------------------

    async def _key_is_valid(self, request: SynapseRequest) -> dict:
        values = query_values(request, "public_key") or [b""]
        return {
            "valid": self._key.public_key is not None
            and values[0].decode("ascii", errors="replace") == self._key.public_key
        }

    async def _ephemeral_key_is_valid(self, request: SynapseRequest) -> dict:
        return {"valid": False}  # no ephemeral keys are ever issued

    async def _public_key(self, request: SynapseRequest) -> dict:
        if self._key.public_key is None:
            raise SynapseError(503, "The key is not loaded yet", Codes.UNKNOWN)
        return {"public_key": self._key.public_key}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
