# SPDX-License-Identifier: AGPL-3.0-or-later
"""Email invitations: who may invite which address where, and what happens to an invitation.

An invitation comes in through either door, with the same rules and the same effects:

* a standard client's email invite (``POST /rooms/{id}/invite`` with ``medium: email``):
  Synapse asks ``user_may_send_3pid_invite`` (here), then this server's identity service
  (:mod:`.identity_server`) stores the invitation, and Synapse sends the room's
  ``m.room.third_party_invite``;
* the appliance's endpoint (:mod:`.invite_api`), which does the same without Synapse's call to
  an identity server over HTTPS.

An address whose domain is not allowed may be invited only into a room open to externals or a
direct chat (Tchap's "invite to join" a conversation); an allowed address anywhere.

In a network of appliances, an address of a peer's domain is an agent of that peer
(:mod:`appliance.synapse_module.federation.peer_accounts`): its account there is invited, over
federation; without one yet, the invitation mail names that peer as the server to register on
(the address never registers here).

The invitation is stored (:mod:`.store`) and mailed with a link to a page that says how to
create the account.  While it waits, it lets its address register (the registration policy
asks :meth:`Invitations.standing`): an invitation the room has revoked, or one already used,
does not.

Every invitation mail is a mail in the server's name, so they are limited
(:class:`~appliance.synapse_module.config.InvitationLimits`): per inviter in any minute and in
any 24 hours, per address in any 24 hours, counted in the invitations table (the same for every
Synapse process).  Past a limit: 429 ``M_LIMIT_EXCEEDED`` with ``retry_after_ms`` and one of
the ``TOO_MANY_*`` messages, and no mail.  An address already invited into a room, while that
invitation is pending there, is not mailed again: the second invitation answers as the first
did and reuses it (a client that retries, or two members inviting the same person, see a
success, as Element expects from an invite; the room already shows the pending invitation).

A server admin sees every invitation (:meth:`Invitations.describe`, for the console) and may
revoke a pending one (:meth:`Invitations.revoke`): its address can no longer register.

When the address lands on an account, :meth:`Invitations.complete_for` revokes the
third-party invite, invites the account (as the inviter, or another member who may invite if
the inviter cannot any more) and joins it.  This replaces Matrix's signed exchange through
the identity server, which would need a second HTTPS call from Synapse to itself and a binding
that Synapse's registration never makes.

On the network's externals' server, an invitation may be for a room of another server: an
agents peer relayed it (:mod:`.relayed_invitations`).  This server is not in that room, so such
an invitation is pending until it is used or an administrator revokes it, and it is completed
the Matrix way: ``3pid/onbind`` on the inviting server (``exchange``,
:mod:`appliance.synapse_module.federation.onbind`), whose Synapse sends the invite.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Awaitable, Callable
from typing import Literal

from synapse.module_api import NOT_SPAM, ModuleApi
from synapse.module_api.errors import Codes, SynapseError

from appliance.addresses.email_address import EmailAddress, InvalidEmailAddress, parse_email
from appliance.operations import metrics
from appliance.synapse_module.accounts.registration import AllowlistSource, Verdict, decide
from appliance.synapse_module.config import InvitationLimits
from appliance.synapse_module.externals.identity_key import IdentityKey
from appliance.synapse_module.externals.invitation_mail import InvitationMail
from appliance.synapse_module.externals.policy import ExternalDirectory
from appliance.synapse_module.externals.store import Exhausted, ExternalStore, Invitation, Quota
from appliance.synapse_module.federation.externals_relay import ExternalsRelay
from appliance.synapse_module.federation.peer_accounts import PeerAccounts
from appliance.synapse_module.federation.peers import Network, Peer
from appliance.synapse_module.rooms.kinds import (
    ACCESS_RULES,
    CREATE,
    DIRECT_FULL,
    JOIN_RULES,
    MEMBER,
    POWER_LEVELS,
    THIRD_PARTY_INVITE,
    RoomKind,
    RoomState,
    direct_chat_full,
)

logger = logging.getLogger(__name__)

# An address of a peer's domain whose account appeared while the invitation was being made.
PEER_ACCOUNT_EXISTS = "{address} has an account on {server}: invite {user_id}"
# A domain that several servers of the network claim belongs to none (peers.Network.owner_of).
CONTESTED_DOMAIN = (
    "This address cannot be invited: its domain {domain} is claimed by several servers of "
    "the network ({servers}); their administrators must settle which one holds it"
)
EXTERNALS_CANNOT_INVITE_BY_EMAIL = "Externals cannot invite people by email"
# What became of an invitation, as the console shows it.
PENDING, REVOKED, USED, FAILED = "pending", "revoked", "used", "failed"
JOINED = "joined"  # the outcome of an invitation used by its person
# The outcome of an invitation of a peer's address once its account exists there: the account
# is invited, and accepts on its own server.
INVITED_ON_PEER = "invited on its own server"
# The outcome of an invitation into a room of another server once its address has an account
# here: that server was told (3pid/onbind) and invites the account.
INVITED_BY_ROOM_SERVER = "invited by the room's server"
# Pending invitations are read this many at a time, page after page, every round.
PEER_PAGE = 500
MAX_PEER_PAGES = 1000  # a bound on one round (the limits keep far fewer invitations)
# An invitation of a peer's address whose account never appeared is withdrawn after this long.
PEER_INVITATION_DAYS = 30
PEER_INVITATION_EXPIRED = "revoked: no account on {server} after {days} days"
# Its outcome while the person is being joined; still there after a crash or restart meanwhile.
INTERRUPTED = "failed: interrupted before the room was joined"
ONLY_EMAIL = "Only email addresses can be invited"
# The relay refused the mail, or did not answer in time (invitation_mail.SEND_TIMEOUT_SECONDS).
MAIL_NOT_SENT = "The invitation mail could not be sent; nothing was kept: try again later"
ONLY_MEMBERS_WHO_MAY_INVITE = "Only a member allowed to invite can invite by email"
TOO_MANY_FROM_YOU_NOW = (
    "You have sent too many email invitations in the last minute: wait a moment, then try again"
)
TOO_MANY_FROM_YOU_TODAY = (
    "You have sent as many email invitations as allowed in 24 hours: try again later"
)
TOO_MANY_FOR_ADDRESS = (
    "This address has received as many invitations as allowed in 24 hours: try again later"
)
REVOKED_BY_THE_ROOM = "revoked by the room"
NAME = "m.room.name"
MINUTE_MS = 60 * 1000
DAY_MS = 24 * 60 * MINUTE_MS


def masked(email: EmailAddress) -> str:
    """How room members see a pending invitation: ``j...@gmail.com``."""
    return f"{email.local[:1]}...@{email.unicode_domain}"


def new_token() -> str:
    # Synapse accepts [0-9a-zA-Z.=_-]{1,255} as a third-party invite token.
    return secrets.token_urlsafe(32)


class Invitations:
    def __init__(
        self,
        api: ModuleApi,
        store: ExternalStore,
        directory: ExternalDirectory,
        allowlist: AllowlistSource,
        key: IdentityKey,
        mail: InvitationMail,
        limits: InvitationLimits,
        *,
        network: Network | None = None,
        peer_accounts: PeerAccounts | None = None,
        exchange: Callable[[Invitation, str], Awaitable[str]] | None = None,
        relay: ExternalsRelay | None = None,
    ) -> None:
        self._api = api
        self._store = store
        self._directory = directory
        self._allowlist = allowlist
        self._key = key
        self._mail = mail
        self._limits = limits
        # In a network of appliances, an address of a peer's domain has its account there.
        self._network = network
        self._peer_accounts = peer_accounts
        # Completes an invitation into another server's room (3pid/onbind): its outcome.
        self._exchange = exchange
        # The network's externals' server, which holds the accounts of unknown addresses.
        self._relay = relay

    def register(self) -> None:
        self._api.register_spam_checker_callbacks(
            user_may_send_3pid_invite=self.user_may_send_3pid_invite
        )

    # --- who may invite whom -------------------------------------------------------------------

    def address_problem(self, address: str, kind: RoomKind) -> str | None:
        """Why this address cannot be invited into a room of this kind, or None."""
        admission = decide(address, self._allowlist())
        if admission.verdict is Verdict.INVALID_ADDRESS:
            return f"This address cannot be invited: {admission.reason}"
        if admission.verdict is Verdict.UNAVAILABLE:
            return f"Invitations by email are unavailable: {admission.reason}"
        if admission.email is not None and self.owner_of(admission.email) is not None:
            return None  # an agent of a peer: invited like an agent of this server
        if admission.email is not None and (claimants := self.contested(admission.email)):
            return CONTESTED_DOMAIN.format(
                domain=admission.email.domain, servers=", ".join(claimants)
            )
        if (
            admission.verdict is Verdict.NOT_ALLOWED
            and admission.email is not None
            and kind not in (RoomKind.OPEN, RoomKind.DIRECT)  # a direct chat: Tchap's "invite"
        ):
            return (
                f"Only a room open to externals (or a direct chat) can invite "
                f"{admission.email.address}: its domain {admission.email.domain} is not among "
                "the domains allowed on this server"
            )
        return None

    def owner_of(self, email: EmailAddress) -> Peer | None:
        """The peer that holds the accounts of this address's domain, if it is not this
        server's own (this server's allowlist wins)."""
        if self._network is None or decide(email.address, self._allowlist()).allowed:
            return None
        return self._network.owner_of(email.domain)

    def contested(self, email: EmailAddress) -> tuple[str, ...]:
        """The servers that each claim this address's domain (when more than one does and it
        is not this server's own): its invitations go nowhere until one is left."""
        if self._network is None or decide(email.address, self._allowlist()).allowed:
            return ()
        return self._network.contested(email.domain)

    def peer_deadline(self) -> float | None:
        """The deadline of a request's peer account queries, if it starts now."""
        return self._peer_accounts.deadline() if self._peer_accounts is not None else None

    async def peer_account(
        self, email: EmailAddress, *, asker: str, deadline: float | None = None
    ) -> tuple[Peer, str | None] | None:
        """For an address of a peer's domain, or of no domain of the network when the network
        has an externals' server: that server, and its account there (None: none yet).  None
        for any other address.  Raises 502 if the server cannot tell by the deadline, 429 past
        the asker's limit (:meth:`.PeerAccounts.account_at`)."""
        owner = self.owner_of(email)
        if owner is None and self._relay is not None:
            owner = self._relay.server_for(email)
        if owner is None or self._peer_accounts is None:
            return None
        account = await self._peer_accounts.account_at(
            owner, email.address, asker=asker, deadline=deadline
        )
        return owner, account

    async def problem_with(self, inviter: str, address: str, room_id: str) -> str | None:
        """Why ``inviter`` may not invite this address into this room, or None."""
        if await self._directory.is_external(inviter):
            return EXTERNALS_CANNOT_INVITE_BY_EMAIL
        state = RoomState(
            await self._api.get_room_state(room_id, [(ACCESS_RULES, ""), (JOIN_RULES, "")])
        )
        return self.address_problem(address, state.kind)

    async def member_may_invite(self, inviter: str, room_id: str) -> bool:
        """Whether inviter is in the room and has the power to invite there."""
        state = RoomState(
            await self._api.get_room_state(
                room_id, [(CREATE, ""), (POWER_LEVELS, ""), (MEMBER, inviter)]
            )
        )
        return state.membership(inviter) == "join" and state.power_of(inviter) >= (
            state.invite_level()
        )

    async def user_may_send_3pid_invite(
        self, inviter: str, medium: str, address: str, room_id: str
    ) -> Literal["NOT_SPAM"] | tuple[Codes, dict]:
        """Synapse's ``user_may_send_3pid_invite`` (spam checker callback), the identity-service
        door, before Synapse calls store-invite.

        Args:
            inviter: who invites.
            medium, address: whom (only ``email`` is accepted).
            room_id: into which room.

        Returns:
            ``NOT_SPAM``, or ``(M_FORBIDDEN, {"error": message})`` saying why not.

        Raises:
            SynapseError: 429 ``M_LIMIT_EXCEEDED`` past a limit (Synapse would turn any returned
                code into a 403).
        """
        problem = (
            ONLY_EMAIL if medium != "email" else await self.problem_with(inviter, address, room_id)
        )
        if problem is not None and not await self._api.is_user_admin(inviter):
            logger.info("refused %s's email invitation into %s: %s", inviter, room_id, problem)
            return Codes.FORBIDDEN, {"error": problem}
        email = canonical_email(address)
        # Synapse asks this only once the identity service's lookup found no account; an
        # account on a peer made meanwhile is invited by its Matrix ID, not mailed.
        on_peer = await self.peer_account(email, asker=inviter)
        if on_peer is not None and on_peer[1] is not None:
            peer, user_id = on_peer
            message = PEER_ACCOUNT_EXISTS.format(
                address=email.address, server=peer.server_name, user_id=user_id
            )
            return Codes.FORBIDDEN, {"error": message}
        if await self.pending(email.address, room_id) is None:
            await self.check_limits(inviter, email.address)
        return NOT_SPAM

    # --- limits --------------------------------------------------------------------------------

    def _quotas(self, inviter: str, address: str) -> tuple[Quota, ...]:
        limits = self._limits
        return (
            Quota("inviter", inviter, limits.per_inviter_per_minute, MINUTE_MS),
            Quota("inviter", inviter, limits.per_inviter_per_day, DAY_MS),
            Quota("address", address, limits.per_address_per_day, DAY_MS),
        )

    async def check_limits(self, inviter: str, address: str) -> None:
        """Raise 429 if one more invitation mail from inviter to address would pass a limit: the
        early, clear answer, before a room event is sent; :meth:`create` decides atomically."""
        exhausted = await self._store.exhausted(self._quotas(inviter, address))
        if exhausted is not None:
            metrics.REFUSALS.labels(metrics.INVITATION_LIMIT).inc()
            raise _too_many(inviter, exhausted)

    # --- invitations -------------------------------------------------------------------------

    def third_party_invite_content(self, email: EmailAddress) -> dict:
        """The content of the room's ``m.room.third_party_invite``, as Synapse writes it."""
        keys = self._key.public_keys()
        return {
            "display_name": masked(email),
            "public_keys": keys,
            "key_validity_url": keys[0]["key_validity_url"],
            "public_key": keys[0]["public_key"],
        }

    async def pending(self, address: str, room_id: str) -> Invitation | None:
        """The invitation of this address into this room that is still pending there, or None.
        One the room has withdrawn (a member emptied its m.room.third_party_invite) is recorded
        as revoked here: the address may be invited into the room again."""
        for invitation in await self._store.pending_in_room(address, room_id):
            if await self._still_in_room(invitation):
                return invitation
            await self._store.complete(invitation.token, None, REVOKED_BY_THE_ROOM)
        return None

    async def create(
        self,
        inviter: str,
        email: EmailAddress,
        room_id: str,
        token: str,
        *,
        names: tuple[str, str] | None = None,
    ) -> Invitation:
        """Store the invitation and mail it, if every limit has a place (else 429, nothing
        kept); if the mail cannot go, nothing is kept. An invitation of this address still
        pending in this room is returned instead (its token differs): no second mail.
        names: the room's and the inviter's names for the mail, when the room is another
        server's (else read from the room)."""
        pending = await self.pending(email.address, room_id)
        if pending is not None:
            return pending
        invitation = Invitation(
            token=token,
            link_id=secrets.token_urlsafe(24),
            address=email.address,
            room_id=room_id,
            inviter=inviter,
            created_at=self._api.get_current_time_msec(),
        )
        admitted = await self._store.add_within(invitation, self._quotas(inviter, email.address))
        if isinstance(admitted, Exhausted):
            metrics.REFUSALS.labels(metrics.INVITATION_LIMIT).inc()
            raise _too_many(inviter, admitted)
        if admitted.token != token:
            return admitted  # the same invitation, made meanwhile by another request
        try:
            room_name, inviter_name = names or await self.names(invitation)
            await self._mail.send(invitation, room_name, inviter_name, self.owner_of(email))
        except Exception:
            logger.exception("cannot mail the invitation of %s into %s", email.domain, room_id)
            await self._store.delete_invitation(token)
            raise SynapseError(502, MAIL_NOT_SENT, Codes.UNKNOWN) from None
        logger.info("%s invited an address of %s into %s", inviter, email.domain, room_id)
        metrics.INVITATIONS.inc()
        return invitation

    async def names(self, invitation: Invitation) -> tuple[str, str]:
        """The room's name and the inviter's display name, as the room shows them."""
        return await self.names_in(invitation.room_id, invitation.inviter)

    async def names_in(self, room_id: str, inviter: str) -> tuple[str, str]:
        state = RoomState(await self._api.get_room_state(room_id, [(NAME, ""), (MEMBER, inviter)]))
        room_name = (state.content(NAME) or {}).get("name") or room_id
        member = state.content(MEMBER, inviter) or {}
        return room_name, member.get("displayname") or inviter

    async def relay_problem(self, inviter: str, room_id: str) -> str | None:
        """Why an invitation stored on the externals' server (which mails at once) would not
        reach this room, asked before it is relayed: the room's own rules come after."""
        if not await self.member_may_invite(inviter, room_id):
            return ONLY_MEMBERS_WHO_MAY_INVITE
        state = RoomState(await self._api.get_room_state(room_id))
        return DIRECT_FULL if direct_chat_full(state) else None

    async def standing(self, address: str) -> bool:
        """Whether an invitation waits for this (canonical) address and its room still has it."""
        for invitation in await self._store.pending_for(address):
            if await self._still_in_room(invitation):
                return True
        return False

    def _room_elsewhere(self, invitation: Invitation) -> bool:
        """Whether the invitation is into another server's room (relayed here by its inviter's
        server): this server cannot read that room."""
        return not self._api.is_mine(invitation.inviter)

    async def _still_in_room(self, invitation: Invitation) -> bool:
        if self._room_elsewhere(invitation):
            return True  # until used or revoked here: the inviting server withdraws its own
        state = await self._api.get_room_state(
            invitation.room_id, [(THIRD_PARTY_INVITE, invitation.token)]
        )
        return bool(RoomState(state).content(THIRD_PARTY_INVITE, invitation.token))

    async def by_link(self, link_id: str) -> Invitation | None:
        return await self._store.by_link(link_id)

    # --- the administrators' view ----------------------------------------------------------------

    async def describe(self, invitation: Invitation) -> dict:
        """The invitation as the console lists it, with its room's name and its status."""
        state = RoomState(
            await self._api.get_room_state(
                invitation.room_id,
                [(NAME, ""), (MEMBER, invitation.inviter), (THIRD_PARTY_INVITE, invitation.token)],
            )
        )
        return {
            "id": invitation.token,
            "address": invitation.address,
            "room_id": invitation.room_id,
            "room_name": (state.content(NAME) or {}).get("name"),
            "inviter": invitation.inviter,
            "inviter_name": (state.content(MEMBER, invitation.inviter) or {}).get("displayname"),
            "created_at": invitation.created_at,
            "status": _status(
                invitation,
                {"elsewhere": True}
                if self._room_elsewhere(invitation)
                else state.content(THIRD_PARTY_INVITE, invitation.token),
            ),
            "completed_at": invitation.completed_at,
            "user_id": invitation.user_id,
            "outcome": invitation.outcome,
        }

    async def revoke(self, token: str, admin: str) -> bool:
        """Revoke a pending invitation for a server admin: its address can no longer register,
        and the room's pending invitation is withdrawn. Return whether the room's was (someone
        left in the room must be allowed to invite to withdraw it)."""
        invitation = await self._store.by_token(token)
        if invitation is None:
            raise SynapseError(404, "This invitation does not exist", Codes.NOT_FOUND)
        if not invitation.pending:
            raise _no_longer_pending(invitation.outcome)
        # The record first: from now on the address cannot register, whatever the room does.
        # Only one completion claims it: a revoke that loses to another, or to the address's
        # registration, leaves the room alone.
        if not await self._store.complete(token, None, f"revoked by {admin}"):
            latest = await self._store.by_token(token)
            raise _no_longer_pending(latest.outcome if latest else None)
        logger.info("%s revoked the invitation into %s", admin, invitation.room_id)
        state = RoomState(await self._api.get_room_state(invitation.room_id))
        if not state.content(THIRD_PARTY_INVITE, token):
            return True
        sender = await self._inviter(invitation, state)
        if sender is None:
            return False
        try:
            await self._withdraw_from_room(invitation, sender)
        except SynapseError as error:
            logger.warning("cannot withdraw it from %s: %s", invitation.room_id, error.msg)
            return False
        return True

    async def _withdraw_from_room(self, invitation: Invitation, sender: str) -> None:
        """Empty the room's m.room.third_party_invite: clients stop showing the invitation."""
        await self._api.create_and_send_event_into_room(
            {
                "type": THIRD_PARTY_INVITE,
                "room_id": invitation.room_id,
                "sender": sender,
                "state_key": invitation.token,
                "content": {},
            }
        )

    # --- completion, when the address lands on an account ---------------------------------------

    async def complete_for(self, user_id: str, address: str) -> None:
        for invitation in await self._store.pending_for(address):
            # Claimed before the room is touched, as a revoke does: of the two, only the one
            # that claims the record acts in the room. Claimed as interrupted, so that a crash
            # or a restart before the join leaves the console an honest record.
            if not await self._store.complete(invitation.token, user_id, INTERRUPTED):
                continue  # revoked meanwhile
            if self._room_elsewhere(invitation) and self._exchange is not None:
                outcome = await self._exchange(invitation, user_id)
            else:
                outcome = await self._complete(invitation, user_id)
            await self._store.set_outcome(invitation.token, outcome)
            logger.info("invitation into %s for %s: %s", invitation.room_id, user_id, outcome)

    async def complete_on_peers(self) -> None:
        """Invitations of peers' addresses whose account now exists on the peer: that account
        is invited into the room (over federation), as if it had been invited by its ID.  Every
        pending invitation is looked at, page by page (those of no peer's domain, externals'
        invitations, are skipped without asking anyone); one older than
        :data:`PEER_INVITATION_DAYS` is withdrawn.  A peer that cannot be asked now is asked
        no more this round, and again next round."""
        if self._peer_accounts is None:
            return
        expired_before = self._api.get_current_time_msec() - PEER_INVITATION_DAYS * DAY_MS
        unreachable: set[str] = set()
        before: tuple[int, str] | None = None
        for _ in range(MAX_PEER_PAGES):
            page = await self._store.page(True, before, PEER_PAGE)
            if not page:
                return
            before = (page[-1].created_at, page[-1].token)
            for invitation in page:
                owner = self.owner_of(canonical_email(invitation.address))
                if owner is None:
                    continue
                if invitation.created_at < expired_before:
                    await self._expire(invitation, owner)
                elif owner.server_name not in unreachable:
                    if not await self._complete_on_peer(invitation, owner):
                        unreachable.add(owner.server_name)

    async def _complete_on_peer(self, invitation: Invitation, owner: Peer) -> bool:
        """Invite the peer's account of this invitation if it exists; False if the peer
        cannot be asked."""
        assert self._peer_accounts is not None
        try:
            user_id = await self._peer_accounts.account_at(owner, invitation.address, fresh=True)
        except SynapseError:
            return False
        if user_id is None or not await self._store.complete(
            invitation.token, user_id, INTERRUPTED
        ):
            return True  # no account yet, or revoked meanwhile
        outcome = await self._complete(invitation, user_id, join=False)
        await self._store.set_outcome(invitation.token, outcome)
        logger.info("invitation into %s for %s: %s", invitation.room_id, user_id, outcome)
        return True

    async def _expire(self, invitation: Invitation, owner: Peer) -> None:
        """Withdraw an invitation whose account never appeared on its peer: recorded first
        (the room is left alone if another completion claimed it), then emptied in the room."""
        outcome = PEER_INVITATION_EXPIRED.format(
            server=owner.server_name, days=PEER_INVITATION_DAYS
        )
        if not await self._store.complete(invitation.token, None, outcome):
            return
        logger.info("invitation into %s expired", invitation.room_id)
        try:
            state = RoomState(await self._api.get_room_state(invitation.room_id))
            if state.content(THIRD_PARTY_INVITE, invitation.token):
                sender = await self._inviter(invitation, state)
                if sender is not None:
                    await self._withdraw_from_room(invitation, sender)
        except Exception as error:  # the record says it: the room keeps a stale invitation
            logger.warning("cannot withdraw it from %s: %s", invitation.room_id, error)

    async def _complete(self, invitation: Invitation, user_id: str, *, join: bool = True) -> str:
        room_id = invitation.room_id
        try:
            state = RoomState(await self._api.get_room_state(room_id))
            if not state.content(THIRD_PARTY_INVITE, invitation.token):
                return REVOKED_BY_THE_ROOM
            inviter = await self._inviter(invitation, state)
            if inviter is None:
                return "failed: nobody left in the room may invite"
            # Revoked first: a direct chat has room for only one pending invitation or person.
            await self._withdraw_from_room(invitation, inviter)
            await self._api.update_room_membership(inviter, user_id, room_id, "invite")
            if not join:  # a user of another server accepts on their own server
                return INVITED_ON_PEER
            await self._api.update_room_membership(user_id, user_id, room_id, "join")
        except SynapseError as error:
            # This runs inside /register, which must succeed anyway: the console shows it.
            logger.warning("cannot complete the invitation into %s: %s", room_id, error.msg)
            return f"failed: {error.msg}"
        except Exception:
            logger.exception("cannot complete the invitation into %s", room_id)
            return "failed: internal error (see Synapse's log)"
        return JOINED

    async def _inviter(self, invitation: Invitation, state: RoomState) -> str | None:
        """The inviter if they still may invite, else another member (not external) who may."""
        members = [p for p in state.people() if state.membership(p) == "join"]
        for candidate in [invitation.inviter, *members]:
            if (
                state.membership(candidate) == "join"
                and self._api.is_mine(candidate)  # the module acts only in local users' names
                and state.power_of(candidate) >= state.invite_level()
                and not await self._directory.is_external(candidate)
            ):
                return candidate
        return None


def _too_many(inviter: str, exhausted: Exhausted) -> SynapseError:
    quota, retry_after_ms = exhausted.quota, exhausted.retry_after_ms
    if quota.column == "address":
        message = TOO_MANY_FOR_ADDRESS
    else:
        message = TOO_MANY_FROM_YOU_NOW if quota.window_ms == MINUTE_MS else TOO_MANY_FROM_YOU_TODAY
    # Logged with the inviter, never the address (the log is read by more people than the mail).
    logger.warning(
        "refused an email invitation from %s: %d per %d s reached (by %s)",
        inviter,
        quota.most,
        quota.window_ms // 1000,
        quota.column,
    )
    return SynapseError(
        429,
        message,
        Codes.LIMIT_EXCEEDED,
        additional_fields={"retry_after_ms": retry_after_ms},
        headers={"Retry-After": str(math.ceil(retry_after_ms / 1000))},
    )


def _no_longer_pending(outcome: str | None) -> SynapseError:
    return SynapseError(409, f"This invitation is no longer pending ({outcome})", Codes.UNKNOWN)


def _status(invitation: Invitation, in_room: dict | None) -> str:
    """in_room: the room's m.room.third_party_invite for it (empty or None once withdrawn)."""
    if invitation.pending:
        # A room member may have revoked it in the room: it can no longer be used.
        return PENDING if in_room else REVOKED
    if invitation.outcome in (JOINED, INVITED_ON_PEER, INVITED_BY_ROOM_SERVER):
        return USED
    return REVOKED if (invitation.outcome or "").startswith("revoked") else FAILED


def canonical_email(address: object) -> EmailAddress:
    """The address in the form the server stores and binds, or a 400 saying what is wrong."""
    if not isinstance(address, str):
        raise SynapseError(400, "email must be a string", Codes.INVALID_PARAM)
    try:
        return parse_email(address)
    except InvalidEmailAddress as error:
        raise SynapseError(
            400, f"This address cannot be invited: {error}", Codes.INVALID_PARAM
        ) from None
