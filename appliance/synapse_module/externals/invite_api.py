# SPDX-License-Identifier: AGPL-3.0-or-later
"""Invitation by email without a standard client's identity-server dance, and its mailed page.

``POST /_synapse/client/appliance/v1/invite_external`` with the agent's own access token and
``{"room_id": "!room:server", "email": "jane@example.com"}`` does what a standard client's
email invite does (:mod:`.invitations`), without Synapse calling an identity server over
HTTPS, which a homeserver reachable only over plain HTTP (the evaluation appliance) cannot do:

* an address that already has an account: that account is invited;
  ``200 {"room_id", "email", "user_id": "@...", "pending": false}``;
* in a network of appliances, an address of a peer's domain: its account there is invited
  over federation (asked of that peer, :mod:`appliance.synapse_module.federation.peer_accounts`),
  or, without one yet, the invitation is mailed naming the peer to register on; the answer adds
  ``"server": "<the peer>"``; 502 if the peer cannot be asked;
* in a network with an externals' server, an address of no domain of the network: the
  invitation is stored and mailed there (:mod:`appliance.synapse_module.federation.
  externals_relay`), and the room gets an ``m.room.third_party_invite`` with that server's
  token and key, which Synapse turns into an invite of the person's account there once they
  have registered; ``200 {..., "user_id": null, "pending": true, "server": "<that server>"}``
  (an address with an account there already: that account is invited, ``"pending": false``);
  502 naming it if it cannot be asked (nothing sent into the room, nothing stored here);
* otherwise the room gets an ``m.room.third_party_invite`` from the inviter (so the room's
  members see it, and may revoke it, as with any email invitation), the invitation is stored
  and mailed; ``200 {"room_id", "email", "user_id": null, "pending": true}``;
* an address whose invitation into this room is still pending there: the same answer, and
  nothing else (no second room event, no second mail). A success, not a refusal: the person
  is invited, as asked, and a client that retries after a lost answer must not see an error.

Refusals: 400 ``M_INVALID_PARAM`` / ``M_MISSING_PARAM`` for a bad body or address, 403
``M_FORBIDDEN`` with the reason (an external inviting, an address of a domain not allowed into
a room not open to externals, an inviter who is not in the room or may not invite), 429
``M_LIMIT_EXCEEDED`` with ``retry_after_ms`` past a limit on invitation mails (per inviter, per
address: :mod:`.invitations`), 502 if the mail cannot be sent (nothing is kept).

``GET /_synapse/client/appliance/v1/invitation?id=<link id>``: the page the mail links to,
which tells the invited person how to create the account (HTML, no token needed).
"""

from __future__ import annotations

import logging

from synapse.module_api import (
    DirectServeHtmlResource,
    DirectServeJsonResource,
    ModuleApi,
    SynapseRequest,
    parse_json_object_from_request,
)
from synapse.module_api.errors import Codes, SynapseError

from appliance.addresses.email_address import EmailAddress
from appliance.synapse_module.admin_api.request_args import query_values
from appliance.synapse_module.externals.invitation_mail import PAGE_PATH, InvitationMail
from appliance.synapse_module.externals.invitations import (
    ONLY_MEMBERS_WHO_MAY_INVITE,
    Invitations,
    canonical_email,
    new_token,
)
from appliance.synapse_module.federation.externals_relay import ExternalsRelay
from appliance.synapse_module.federation.peers import Peer
from appliance.synapse_module.rooms.kinds import THIRD_PARTY_INVITE
from appliance.synapse_module.synapse_internals import SynapseInternals

logger = logging.getLogger(__name__)

INVITE_PATH = "/_synapse/client/appliance/v1/invite_external"


class InviteExternalResource(DirectServeJsonResource):
    def __init__(
        self,
        api: ModuleApi,
        invitations: Invitations,
        internals: SynapseInternals,
        relay: ExternalsRelay | None = None,
    ) -> None:
        super().__init__()
        self._api = api
        self._invitations = invitations
        self._internals = internals
        self._relay = relay  # the network's externals' server takes unknown addresses

    def register(self) -> None:
        """Serve INVITE_PATH (on every process: any may receive the request)."""
        self._api.register_web_resource(INVITE_PATH, self)

    async def _async_render_POST(self, request: SynapseRequest) -> tuple[int, dict]:
        inviter = (await self._api.get_user_by_req(request)).user.to_string()
        body = parse_json_object_from_request(request)
        room_id = body.get("room_id")
        if not isinstance(room_id, str) or not room_id:
            raise SynapseError(400, "room_id is required", Codes.MISSING_PARAM)
        email = canonical_email(body.get("email"))
        problem = await self._invitations.problem_with(inviter, email.address, room_id)
        if problem is not None and not await self._api.is_user_admin(inviter):
            raise SynapseError(403, problem, Codes.FORBIDDEN)
        answer: dict = {"room_id": room_id, "email": email.address}
        on_peer = await self._invitations.peer_account(email, asker=inviter)
        if on_peer is not None:
            answer["server"] = on_peer[0].server_name
        existing = on_peer[1] if on_peer else await self._internals.user_of_email(email.address)
        if existing is not None:
            await self._api.update_room_membership(inviter, existing, room_id, "invite")
            return 200, {**answer, "user_id": existing, "pending": False}
        server = self._relay.server_for(email) if self._relay is not None else None
        if server is not None:
            return 200, await self._invite_there(inviter, email, room_id, server, answer)
        if await self._invitations.pending(email.address, room_id) is None:
            await self._invitations.check_limits(inviter, email.address)
            await self._invite(inviter, email, room_id)
        elif not await self._invitations.member_may_invite(inviter, room_id):
            # Nothing is sent to the room here: its auth rules cannot refuse an outsider.
            raise SynapseError(403, ONLY_MEMBERS_WHO_MAY_INVITE, Codes.FORBIDDEN)
        return 200, {**answer, "user_id": None, "pending": True}

    async def _invite_there(
        self, inviter: str, email: EmailAddress, room_id: str, server: Peer, answer: dict
    ) -> dict:
        """The invitation stored on the externals' server, then its event in the room."""
        assert self._relay is not None
        # That server mails at once: what this room would refuse is refused first.
        if problem := await self._invitations.relay_problem(inviter, room_id):
            raise SynapseError(403, problem, Codes.FORBIDDEN)
        room_name, inviter_name = await self._invitations.names_in(room_id, inviter)
        relayed = await self._relay.store_invite(
            server,
            inviter=inviter,
            email=email,
            room_id=room_id,
            room_name=room_name,
            inviter_name=inviter_name,
        )
        answer = {**answer, "server": server.server_name}
        if relayed.existing is not None:
            await self._api.update_room_membership(inviter, relayed.existing, room_id, "invite")
            return {**answer, "user_id": relayed.existing, "pending": False}
        assert relayed.token is not None
        await self._api.create_and_send_event_into_room(
            {
                "type": THIRD_PARTY_INVITE,
                "room_id": room_id,
                "sender": inviter,
                "state_key": relayed.token,
                "content": relayed.third_party_invite_content(),
            }
        )
        return {**answer, "user_id": None, "pending": True}

    async def _invite(self, inviter: str, email: EmailAddress, room_id: str) -> None:
        token = new_token()
        # The room event first: Synapse's auth rules decide there whether the inviter is in
        # the room and may invite, before anything is stored or mailed.
        await self._api.create_and_send_event_into_room(
            {
                "type": THIRD_PARTY_INVITE,
                "room_id": room_id,
                "sender": inviter,
                "state_key": token,
                "content": self._invitations.third_party_invite_content(email),
            }
        )
        try:
            invitation = await self._invitations.create(inviter, email, room_id, token)
        except Exception:
            await self._withdraw(inviter, room_id, token)
            raise
        if invitation.token != token:
            # Another request invited the same address into the room meanwhile: one is enough.
            await self._withdraw(inviter, room_id, token)

    async def _withdraw(self, inviter: str, room_id: str, token: str) -> None:
        await self._api.create_and_send_event_into_room(
            {
                "type": THIRD_PARTY_INVITE,
                "room_id": room_id,
                "sender": inviter,
                "state_key": token,
                "content": {},
            }
        )


class InvitationPage(DirectServeHtmlResource):
    def __init__(self, api: ModuleApi, invitations: Invitations, mail: InvitationMail) -> None:
        super().__init__()
        self._api = api
        self._invitations = invitations
        self._mail = mail

    def register(self) -> None:
        """Serve PAGE_PATH (on every process: any may receive the request)."""
        self._api.register_web_resource(PAGE_PATH, self)

    async def _async_render_GET(self, request: SynapseRequest) -> tuple[int, bytes]:
        values = query_values(request, "id") or [b""]
        invitation = await self._invitations.by_link(values[0].decode("ascii", errors="replace"))
        if invitation is None:
            raise SynapseError(404, "This invitation does not exist", Codes.NOT_FOUND)
        room_name, inviter_name = await self._invitations.names(invitation)
        home = self._invitations.owner_of(canonical_email(invitation.address))
        return 200, self._mail.page(invitation, room_name, inviter_name, home).encode("utf-8")
