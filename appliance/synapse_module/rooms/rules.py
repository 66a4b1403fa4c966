# SPDX-License-Identifier: AGPL-3.0-or-later
"""The room rules, enforced server-side whatever a client sends (kinds in :mod:`.kinds`).

* ``on_create_room`` runs first, before anything is written: it decides every state event the
  creation writes (access rule, join rule, history visibility, guest access, power levels,
  encryption, the client's own ``initial_state``, whose member events become invitations) and
  refuses a request the rules do not allow (an external creating a room, an external invited
  into a private room or a forum, a direct chat for three, a room born tombstoned, power levels
  below the minimums...).  A refusal there leaves nothing half-created, and what it accepts
  passes every later check.
* ``check_event_allowed`` is the backstop every later local event passes through (client API,
  module API, upgrades): it keeps each kind's promises event by event.  The events of a
  creation are those ``on_create_room`` decided.  Messages and other non-state events leave at
  once (redactions are looked at: the rules' own events are never redacted), so the cost per
  message stays negligible.
* ``user_may_publish_room`` and ``user_may_create_room_alias`` keep private rooms out of the
  directory and externals from publishing anything.

A room without a valid access rule is treated as a private room, never as a forum.  Every
refusal is a 403 ``M_FORBIDDEN`` whose message says why (400 ``M_INVALID_PARAM`` for a
malformed request).  Server administrators bypass every refusal.  Room upgrades are refused:
Synapse does not carry the access rule over to the new room.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Literal
from urllib.parse import urlsplit

from synapse.module_api import NOT_SPAM, EventBase, ModuleApi, Requester, RoomAlias, StateMap
from synapse.module_api.errors import Codes, SynapseError

from appliance.synapse_module.externals.identity_key import IdentityKey
from appliance.synapse_module.externals.invitations import (
    EXTERNALS_CANNOT_INVITE_BY_EMAIL,
    Invitations,
)
from appliance.synapse_module.externals.policy import ExternalDirectory, has_marker
from appliance.synapse_module.federation.externals_relay import ExternalsRelay
from appliance.synapse_module.federation.peers import NOT_A_PEER_USER, REMOTE_LEVEL
from appliance.synapse_module.rooms.kinds import (
    ACCESS_RULES,
    CREATE,
    DIRECT_FULL,
    ENCRYPTION,
    FOREIGN_IDENTITY_SERVER,
    GUEST_ACCESS,
    HISTORY_VISIBILITY,
    JOIN_RULES,
    MEMBER,
    ONLY_FORUMS_LISTED,
    POWER_LEVELS,
    PRIVATE_CHAT,
    REDACTION,
    THIRD_PARTY_INVITE,
    TOMBSTONE,
    TRUSTED_PRIVATE_CHAT,
    UNRESTRICTED,
    UPGRADES_REFUSED,
    CreationPlan,
    RoomKind,
    RoomRuleError,
    RoomState,
    access_rule_problem,
    direct_chat_full,
    email_invitation_token,
    email_invite_problem,
    encryption_problem,
    guest_access_problem,
    history_problem,
    identity_keys_of,
    join_rule_problem,
    levels_problem,
    plan_creation,
    raised_in,
    raised_users,
    redaction_problem,
)

logger = logging.getLogger(__name__)

EXTERNALS_CANNOT_CREATE = "Externals cannot create rooms or direct chats"
EXTERNALS_NO_FORUMS = "Externals cannot join forums"
EXTERNALS_NOT_IN_PRIVATE = (
    "Externals cannot be invited into private rooms: open the room to externals first"
)
EXTERNALS_BY_INVITATION = "Externals can join a room open to externals only by invitation"
EXTERNALS_LEVEL = "Externals keep power level 0: they cannot be moderators or administrators"
EXTERNALS_NOT_CREATORS = "Externals cannot be creators of a room"
EXTERNALS_CANNOT_PUBLISH = "Externals cannot publish rooms in the directory"
EXTERNALS_NO_ALIASES = "Externals cannot create room addresses"
EXTERNAL_NAME = "An external's name always ends with (external)"

PER_USER = (MEMBER, THIRD_PARTY_INVITE)  # the state events that have a state key
Check = Callable[[EventBase, RoomState], Awaitable["str | None"]]


def _error(problem: RoomRuleError | str) -> SynapseError:
    if isinstance(problem, RoomRuleError) and problem.malformed:
        return SynapseError(400, problem.message, Codes.INVALID_PARAM)
    return SynapseError(403, str(problem), Codes.FORBIDDEN)


class RoomRules:
    def __init__(
        self,
        api: ModuleApi,
        directory: ExternalDirectory,
        invitations: Invitations,
        key: IdentityKey,
        lifetimes_ms: Mapping[RoomKind, int] | None = None,
        relay: ExternalsRelay | None = None,
    ) -> None:
        self._api = api
        # The network's externals' server stores some invitations: its key is accepted too.
        self._relay = relay
        # The m.room.retention each kind of room is created with (settings: retention.rooms).
        self._lifetimes_ms = dict(lifetimes_ms or {})
        self._directory = directory
        self._invitations = invitations
        self._key = key
        self._checks: dict[str, Check] = {
            CREATE: self._create,
            TOMBSTONE: self._tombstone,
            ACCESS_RULES: self._access_rule,
            JOIN_RULES: self._join_rule,
            ENCRYPTION: self._encryption,
            POWER_LEVELS: self._power_levels,
            HISTORY_VISIBILITY: self._history_visibility,
            GUEST_ACCESS: self._guest_access,
            MEMBER: self._member,
            THIRD_PARTY_INVITE: self._third_party_invite,
        }

    def register(self) -> None:
        self._api.register_third_party_rules_callbacks(
            check_event_allowed=self.check_event_allowed, on_create_room=self.on_create_room
        )
        self._api.register_spam_checker_callbacks(
            user_may_publish_room=self.user_may_publish_room,
            user_may_create_room_alias=self.user_may_create_room_alias,
        )

    # --- room creation -----------------------------------------------------------------------

    async def on_create_room(
        self, requester: Requester, config: dict, is_requester_admin: bool
    ) -> None:
        """Synapse's ``on_create_room`` (third-party rules callback), before anything is written.

        Args:
            requester: who creates the room.
            config: the ``createRoom`` body, rewritten in place into the plan's request (preset,
                visibility, invitations, the whole ``initial_state`` with the power levels first).
            is_requester_admin: whether a server admin creates it (a refused request of theirs
                goes through unchanged).

        Raises:
            SynapseError: 403 ``M_FORBIDDEN`` with the rule's message, or 400
                ``M_INVALID_PARAM`` for a malformed request; Synapse then creates nothing.
        """
        creator = requester.user.to_string()
        try:
            plan = await self._people_checked(
                creator, plan_creation(config, creator=creator, lifetimes_ms=self._lifetimes_ms)
            )
        except RoomRuleError as error:
            if is_requester_admin and not error.malformed:
                logger.info("administrator %s bypassed a room rule: %s", creator, error.message)
                return
            logger.info("refused a room for %s: %s", creator, error.message)
            raise _error(error) from None
        plan.apply_to(config)

    async def _people_checked(self, creator: str, plan: CreationPlan) -> CreationPlan:
        """Check the people the request names; raise :class:`RoomRuleError`."""
        if await self._directory.is_external(creator):
            raise RoomRuleError(EXTERNALS_CANNOT_CREATE)
        raised = raised_in(plan.power_levels)
        named = {*plan.invitees, *plan.additional_creators, *raised}
        if self._directory.refused_among(named):
            raise RoomRuleError(NOT_A_PEER_USER)
        externals = await self._directory.externals_among(named)
        if externals & set(plan.additional_creators):
            raise RoomRuleError(EXTERNALS_NOT_CREATORS)
        if externals & raised:
            raise RoomRuleError(EXTERNALS_LEVEL)
        # Members of other servers never hold power here: their events over federation are
        # not checked by this module (README, "A network of appliances").
        remote = {user for user in named if not self._api.is_mine(user)}
        if remote & {*plan.additional_creators, *raised}:
            raise RoomRuleError(REMOTE_LEVEL)
        invited = externals & set(plan.invitees)
        if invited and plan.kind is RoomKind.FORUM:
            raise RoomRuleError(EXTERNALS_NO_FORUMS)
        if invited and plan.kind is RoomKind.PRIVATE:
            raise RoomRuleError(EXTERNALS_NOT_IN_PRIVATE)
        own = urlsplit(self._api.public_baseurl).netloc
        if any(server != own for server in plan.identity_servers):
            # Synapse would call that server once the room exists: refused before.
            raise RoomRuleError(FOREIGN_IDENTITY_SERVER)
        for address in plan.email_invitees:
            if problem := self._invitations.address_problem(address, plan.kind):
                raise RoomRuleError(problem)
        if (invited or remote) and plan.preset == TRUSTED_PRIVATE_CHAT:
            # An agent may start a direct chat with an external, who must not become one of
            # its creators (with unlimited power).
            return plan.with_preset(PRIVATE_CHAT)
        return plan

    # --- events --------------------------------------------------------------------------------

    async def check_event_allowed(
        self, event: EventBase, state_events: StateMap[EventBase]
    ) -> tuple[bool, dict | None]:
        """Synapse's ``check_event_allowed`` (third-party rules callback), for every local event.

        Args:
            event: the event about to be sent.
            state_events: the room's current state, (type, state key) to event.

        Returns:
            ``(True, None)``: the event is allowed as it is.

        Raises:
            SynapseError: 403 ``M_FORBIDDEN`` with the rule's message (400 for malformed).
        """
        if event.type == REDACTION:
            return await self._redaction(event, state_events)
        if not event.is_state():
            return True, None
        check = self._checks.get(event.type)
        if check is None or (event.state_key != "" and event.type not in PER_USER):
            return True, None  # (a join rule or power levels under another key do nothing)
        state = RoomState(state_events)
        create = state_events.get((CREATE, ""))
        if (
            state.being_created
            and event.type != CREATE
            and create is not None
            and create.sender == event.sender
            and self._api.is_mine(event.sender)
        ):
            # The events of a room's creation come from a request on_create_room has checked,
            # sent by its local creator. (A room another server made without power levels is
            # not "being created": its events are judged like any others.)
            return True, None
        await self._refuse_unless_admin(event, await check(event, state))
        return True, None

    async def _refuse_unless_admin(self, event: EventBase, problem: str | None) -> None:
        if problem is not None and not await self._api.is_user_admin(event.sender):
            logger.info(
                "refused %s in %s from %s: %s", event.type, event.room_id, event.sender, problem
            )
            raise _error(problem)

    async def _redaction(
        self, event: EventBase, state_events: StateMap[EventBase]
    ) -> tuple[bool, dict | None]:
        """A redaction of one of the room's current rule events would strip its content (an
        access rule gone, power levels emptied): only a server admin may."""
        redacted = next(
            (state for state in state_events.values() if state.event_id == event.redacts), None
        )
        problem = redaction_problem(
            redacted.type if redacted else None, redacted.content if redacted else None
        )
        await self._refuse_unless_admin(event, problem)
        return True, None

    async def _create(self, event: EventBase, state: RoomState) -> str | None:
        if "predecessor" in event.content:
            return UPGRADES_REFUSED
        creators = event.content.get("additional_creators", [])
        if isinstance(creators, list) and await self._directory.externals_among(
            c for c in creators if isinstance(c, str)
        ):
            return EXTERNALS_NOT_CREATORS
        return None

    async def _tombstone(self, event: EventBase, state: RoomState) -> str | None:
        return UPGRADES_REFUSED

    async def _access_rule(self, event: EventBase, state: RoomState) -> str | None:
        listed = event.content.get("rule") == UNRESTRICTED and (
            await self._api.public_room_list_manager.room_is_in_public_room_list(event.room_id)
        )
        return access_rule_problem(state, event.content, listed=listed)

    async def _join_rule(self, event: EventBase, state: RoomState) -> str | None:
        return join_rule_problem(state, event.content)

    async def _encryption(self, event: EventBase, state: RoomState) -> str | None:
        return encryption_problem(state, event.content)

    async def _history_visibility(self, event: EventBase, state: RoomState) -> str | None:
        return history_problem(state.kind, event.content)

    async def _guest_access(self, event: EventBase, state: RoomState) -> str | None:
        return guest_access_problem(event.content)

    async def _power_levels(self, event: EventBase, state: RoomState) -> str | None:
        if problem := levels_problem(state.kind, state.content(POWER_LEVELS), event.content):
            return problem
        raised = raised_users(state.content(POWER_LEVELS), event.content)
        if await self._directory.externals_among(raised):
            return EXTERNALS_LEVEL
        return REMOTE_LEVEL if any(not self._api.is_mine(user) for user in raised) else None

    async def _member(self, event: EventBase, state: RoomState) -> str | None:
        membership = event.content.get("membership")
        if membership not in ("join", "invite"):
            return None
        target = event.state_key
        if direct_chat_full(state, target, email_invitation_token(event.content)):
            return DIRECT_FULL
        if not await self._directory.is_external(target):
            return None
        if state.membership(target) != "join":  # (already in: a profile update)
            if problem := _external_entry_problem(state, membership, target):
                return problem
        name = event.content.get("displayname")
        # A local join is the external's own event: Synapse fills in the profile's name unless
        # the key is there, so a null there would hide the marker. (A remote join's make_join
        # template carries no name yet: its server fills it in.)
        nameless = membership == "join" and self._api.is_mine(target) and not isinstance(name, str)
        if nameless or (isinstance(name, str) and not has_marker(name)):
            return EXTERNAL_NAME
        return None

    async def _third_party_invite(self, event: EventBase, state: RoomState) -> str | None:
        if event.content and await self._directory.is_external(event.sender):
            return EXTERNALS_CANNOT_INVITE_BY_EMAIL
        accepted: set[str] = {self._key.public_key} if self._key.public_key else set()
        # (Asked of the externals' server only for a key that is not this server's own.)
        if self._relay is not None and not identity_keys_of(event.content) <= accepted:
            named = {key for key in identity_keys_of(event.content) if isinstance(key, str)}
            accepted |= await self._relay.accepted_keys(named)
        return email_invite_problem(state, event.state_key, event.content, accepted)

    # --- directory -----------------------------------------------------------------------------

    async def user_may_publish_room(
        self, user_id: str, room_id: str
    ) -> Literal["NOT_SPAM"] | tuple[Codes, dict]:
        """Synapse's ``user_may_publish_room`` (spam checker callback).

        Returns:
            ``NOT_SPAM``, or ``(M_FORBIDDEN, {"error": message})`` for a room that is not a
            forum (unless it is leaving the directory) or an external.
        """
        # Synapse does not say whether the room is being listed or unlisted: a room that is
        # not a forum may only leave the directory (it can be listed from before the rules).
        if await self._directory.is_external(user_id):
            problem: str | None = EXTERNALS_CANNOT_PUBLISH
        else:
            state = RoomState(
                await self._api.get_room_state(room_id, [(ACCESS_RULES, ""), (JOIN_RULES, "")])
            )
            listed = await self._api.public_room_list_manager.room_is_in_public_room_list(room_id)
            problem = None if state.kind is RoomKind.FORUM or listed else ONLY_FORUMS_LISTED
        if problem is None or await self._api.is_user_admin(user_id):
            return NOT_SPAM
        return Codes.FORBIDDEN, {"error": problem}

    async def user_may_create_room_alias(
        self, user_id: str, alias: RoomAlias
    ) -> Literal["NOT_SPAM"] | tuple[Codes, dict]:
        """Synapse's ``user_may_create_room_alias`` (spam checker callback).

        Returns:
            ``NOT_SPAM``, or ``(M_FORBIDDEN, {"error": message})`` for an external.
        """
        if await self._directory.is_external(user_id):
            return Codes.FORBIDDEN, {"error": EXTERNALS_NO_ALIASES}
        return NOT_SPAM


def _external_entry_problem(state: RoomState, membership: str, target: str) -> str | None:
    """Whether an external may be invited into, or join, this room."""
    kind = state.kind
    if kind is RoomKind.FORUM:
        return EXTERNALS_NO_FORUMS
    if kind is RoomKind.PRIVATE:
        return EXTERNALS_NOT_IN_PRIVATE
    if membership == "join" and state.membership(target) != "invite":
        return EXTERNALS_BY_INVITATION
    return None
