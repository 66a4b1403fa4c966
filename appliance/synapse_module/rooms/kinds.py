# SPDX-License-Identifier: AGPL-3.0-or-later
"""The four kinds of rooms and the rules each keeps, as pure functions over a room's state.

Rooms speak Tchap's state event ``im.vector.room.access_rules`` so that Tchap's clients work
unchanged: ``{"rule": "restricted" | "unrestricted" | "direct",
"visibility": "public" | "private"}``.

=================  ==============  ==========  ===========  =========================
kind               rule            join rule   visibility   encrypted
=================  ==============  ==========  ===========  =========================
private            restricted      invite      private      yes
open to externals  unrestricted    invite      private      yes
forum              restricted      public      public       no, and never later
direct chat        direct          invite      private      yes; two people at most
=================  ==============  ==========  ===========  =========================

A room whose state has no valid access rule (made before the module, by an administrator who
bypassed it, or whose rule was redacted) is a private room, the strictest kind, whatever its
join rule says: a missing rule never loosens anything.

Power levels have minimums (:data:`EVENT_FLOORS` and :func:`level_floors`), as Tchap's guide
promises: inviting needs a moderator (50) except in forums; name, avatar and canonical alias
need 50; other state events 100; group-call membership and live location 0, so that every
member can join a call.  A creation or a later change may raise a required level, never put
it below its minimum (nor below what it already was, for rooms made before the minimums).

Nothing here talks to Synapse: :mod:`.rules` feeds these functions the room's state and
the externals among the people concerned, and turns their answers into Matrix errors.  A
function that checks an event returns ``None`` when it is allowed, or the reason, written for
people, why it is not.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from appliance.synapse_module.synapse_internals import creators_have_unlimited_power

ACCESS_RULES = "im.vector.room.access_rules"
RESTRICTED, UNRESTRICTED, DIRECT = "restricted", "unrestricted", "direct"
RULES = (RESTRICTED, UNRESTRICTED, DIRECT)
MEGOLM = "m.megolm.v1.aes-sha2"

CREATE = "m.room.create"
MEMBER = "m.room.member"
POWER_LEVELS = "m.room.power_levels"
JOIN_RULES = "m.room.join_rules"
HISTORY_VISIBILITY = "m.room.history_visibility"
ENCRYPTION = "m.room.encryption"
THIRD_PARTY_INVITE = "m.room.third_party_invite"
TOMBSTONE = "m.room.tombstone"
GUEST_ACCESS = "m.room.guest_access"
REDACTION = "m.room.redaction"
NAME, AVATAR, CANONICAL_ALIAS = "m.room.name", "m.room.avatar", "m.room.canonical_alias"
HISTORY_VALUES = ("invited", "joined", "shared", "world_readable")
# State events Synapse validates against the server itself (an ACL must not ban it, aliases
# and retention have their own limits): halfway through a creation a refusal would leave a
# half-made room, so they wait until the room exists.
SET_LATER_TYPES = ("m.room.server_acl", "m.room.aliases", "m.room.retention")

# The state events that make a room's kind and its promises: only a server admin redacts them.
RULE_EVENTS = (ACCESS_RULES, ENCRYPTION, JOIN_RULES, POWER_LEVELS, HISTORY_VISIBILITY, GUEST_ACCESS)
# Group calls (MSC3401 and its stable names) and live location (MSC3672): every member.
CALL_AND_LOCATION = (
    "org.matrix.msc3401.call.member",
    "m.call.member",
    "org.matrix.msc3401.call",
    "m.call",
    "m.beacon_info",
    "org.matrix.msc3672.beacon_info",
)
# Event types that are messages, not state: their level's minimum is events_default's (0).
MESSAGE_TYPES = (
    "m.room.message",
    "m.room.encrypted",
    "m.reaction",
    "m.sticker",
    REDACTION,
    "m.call.invite",
    "m.call.candidates",
    "m.call.answer",
    "m.call.hangup",
    "m.call.reject",
    "m.call.select_answer",
    "m.call.negotiate",
    "m.beacon",
    "org.matrix.msc3672.beacon",
    "m.poll.start",
    "m.poll.response",
    "m.poll.end",
)
# The minimum level each state event needs; any other state event needs STATE_FLOOR.
STATE_FLOOR = 100
EVENT_FLOORS: dict[str, int] = {
    NAME: 50,
    AVATAR: 50,
    CANONICAL_ALIAS: 50,
    **dict.fromkeys(CALL_AND_LOCATION, 0),
}
# What a level the power-levels content leaves out stands for (the Matrix spec's defaults).
SPEC_DEFAULTS = {
    "events_default": 0,
    "state_default": 50,
    "ban": 50,
    "kick": 50,
    "redact": 50,
    "invite": 0,
}

PRIVATE_CHAT, TRUSTED_PRIVATE_CHAT, PUBLIC_CHAT = (
    "private_chat",
    "trusted_private_chat",
    "public_chat",
)
PRESETS = (PRIVATE_CHAT, TRUSTED_PRIVATE_CHAT, PUBLIC_CHAT)
# Room versions whose creators hold unlimited power (MSC4289): the power levels this module
# writes list nobody for the creators.  Synapse's default (12) is one; a later version that
# keeps MSC4289 is added here once tried.
CREATOR_POWER_VERSIONS = ("12",)
PRESENT = ("join", "invite")  # the memberships that count as being in a room


class RoomKind(Enum):
    PRIVATE = "private room"
    OPEN = "room open to externals"
    FORUM = "forum"
    DIRECT = "direct chat"


RETENTION = "m.room.retention"
# The names of the kinds in the settings (retention.rooms) and the module's config.
KIND_SETTING_NAMES = {
    "private": RoomKind.PRIVATE,
    "open_to_externals": RoomKind.OPEN,
    "forum": RoomKind.FORUM,
    "direct": RoomKind.DIRECT,
}


class RoomRuleError(Exception):
    """A room creation the rules refuse; ``malformed`` when the request itself is invalid."""

    def __init__(self, message: str, *, malformed: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.malformed = malformed


# Reasons, written for the people who read them in their client.
UPGRADES_REFUSED = "Rooms cannot be upgraded on this server: ask an administrator"
ONLY_FORUMS_LISTED = "Only forums can be listed in the room directory"
FORUM_UNENCRYPTED = "Forums are public: they cannot be encrypted"
FORUM_STAYS_PUBLIC = "A forum stays public: its join rule cannot change"
INVITE_ONLY = "Only forums can be joined without an invitation: this room stays invite-only"
DIRECT_FULL = "A direct chat holds two people at most"
USERS_DEFAULT = "Everyone starts at power level 0 here: users_default cannot change"
ALGORITHM = f"Rooms are end-to-end encrypted with {MEGOLM} only"
ONE_WAY = (
    "A room's access rule can only change from restricted to unrestricted (a private room "
    "opened to externals), never back or to another rule"
)
FORUM_NOT_OPEN = "A forum cannot be opened to externals"
KIND_IS_FIXED = "A room cannot switch between forum and private room"
HISTORY_STAYS_WITH_MEMBERS = (
    "Only a forum's history can be readable by anyone: a room's history stays with its members"
)
GUESTS_STAY_OUT = "Guests cannot join rooms here: guest access stays forbidden"
RULES_NOT_REDACTED = (
    "A room's rules (access rule, encryption, join rule, power levels, history visibility, "
    "guest access) cannot be redacted"
)
EMAIL_INVITE_NAME = "An email invitation shows its masked address (j...@domain), nothing else"
NAMES_NOT_REDACTED = (
    "A member event's display name cannot be redacted: it shows who the person is (and an "
    "external's marker)"
)
LEVELS_FLOOR = "Power levels here never go below the room's minimums"
INITIAL_MEMBERS = (
    "initial_state can only invite people (membership invite); they count as invitations"
)
INITIAL_EMAIL_INVITES = "Email invitations go in invite_3pid, not in initial_state"
CREATE_ONCE = "A room has one m.room.create event, written by the server: not in initial_state"
ROOM_TYPES = "Only rooms and spaces (m.space) can be created here"
CREATORS_DIRECT_ONLY = (
    "Only the other person of a direct chat can be a creator of it (additional_creators)"
)
OWN_INVITE = "The creator of a room is in it already: do not invite yourself"
OTHERS_STATE = "initial_state cannot set another person's state (a state key starting with @)"
SET_LATER = "This state event can only be set once the room exists, not in initial_state"
OWN_ALIAS = (
    "A new room's canonical alias can only be the address it is created with (room_alias_name)"
)
NOT_CANONICAL = "Event contents hold integers (no fractions, at most 2^53) here"
TOO_LARGE = (
    "A state event of the creation is too large: at most 60,000 bytes of content and 255 "
    "bytes of type or state key"
)
# Synapse refuses an event over 65,536 bytes whole; this leaves room for its envelope.
MAX_CONTENT_BYTES = 60_000
MAX_KEY_BYTES = 255
ROOM_VERSION = "Rooms here are created in room version 12: leave room_version out"
FOREIGN_IDENTITY_SERVER = (
    "Email invitations must go through this server's own identity service (or its network's "
    "externals' server's): choose this server as identity server in your client"
)


def kind_of(rule_content: Mapping | None, join_rule: str | None) -> RoomKind:
    """The room's kind; without a valid rule (none, redacted, unknown) the strictest one."""
    rule = rule_content.get("rule") if rule_content else None
    if rule == DIRECT:
        return RoomKind.DIRECT
    if rule == UNRESTRICTED:
        return RoomKind.OPEN
    if rule_content is None or rule != RESTRICTED:
        return RoomKind.PRIVATE
    visibility = rule_content.get("visibility")
    if visibility == "public" or (visibility is None and join_rule == "public"):
        return RoomKind.FORUM  # older Tchap forums carry no visibility
    return RoomKind.PRIVATE


def visibility_of(kind: RoomKind) -> str:
    return "public" if kind is RoomKind.FORUM else "private"


class RoomState:
    """A room's state as Synapse gives it: ``(type, state_key)`` to events (``content``,
    ``sender``, ``room_version``).  Read lazily: most checks look at two or three events."""

    def __init__(self, events: Mapping[tuple[str, str], Any]) -> None:
        self._events = events

    def content(self, event_type: str, state_key: str = "") -> dict | None:
        event = self._events.get((event_type, state_key))
        return event.content if event is not None else None

    @property
    def being_created(self) -> bool:
        """Whether the room is being created: Synapse shows the events of a room's creation
        only the create event and the creator's join (it persists the rest in one batch), and
        every room gets its power levels in that batch."""
        return (POWER_LEVELS, "") not in self._events

    @property
    def rule_content(self) -> dict | None:
        return self.content(ACCESS_RULES)

    @property
    def join_rule(self) -> str | None:
        content = self.content(JOIN_RULES)
        return content.get("join_rule") if content else None

    @property
    def kind(self) -> RoomKind:
        return kind_of(self.rule_content, self.join_rule)

    def membership(self, user_id: str) -> str | None:
        content = self.content(MEMBER, user_id)
        return content.get("membership") if content else None

    def people(self) -> list[str]:
        """Who is joined or invited."""
        return [
            key
            for (event_type, key), event in self._events.items()
            if event_type == MEMBER and event.content.get("membership") in PRESENT
        ]

    def pending_email_invites(self) -> list[str]:
        """The tokens of email invitations not yet revoked nor used: an invite made from one
        (Synapse's exchange, after ``3pid/onbind``) carries its token, and its person is then
        counted among :meth:`people` instead."""
        used = {
            email_invitation_token(event.content)
            for (event_type, _), event in self._events.items()
            if event_type == MEMBER
        }
        return [
            key
            for (event_type, key), event in self._events.items()
            if event_type == THIRD_PARTY_INVITE and event.content and key not in used
        ]

    def power_of(self, user_id: str) -> float:
        """The user's power level, as the auth rules compute it (creators are infinite)."""
        create = self._events.get((CREATE, ""))
        if create is not None and creators_have_unlimited_power(create):
            creators = [create.sender, *create.content.get("additional_creators", [])]
            if user_id in creators:
                return math.inf
        levels = self.content(POWER_LEVELS)
        if levels is None:
            return 100 if create is not None and user_id == create.sender else 0
        return _level(levels.get("users", {}).get(user_id, levels.get("users_default", 0)))

    def invite_level(self) -> float:
        levels = self.content(POWER_LEVELS) or {}
        return _level(levels.get("invite", 0))


def _level(value: object) -> float:
    if not isinstance(value, int | str):
        return 0
    try:
        return int(value)  # the auth rules accept integers and their string form
    except (TypeError, ValueError):
        return 0


# --- events ---------------------------------------------------------------------------------------


def access_rule_problem(state: RoomState, new: Mapping, *, listed: bool = False) -> str | None:
    """A new ``im.vector.room.access_rules`` content; ``listed``: the room is in the directory."""
    rule = new.get("rule")
    if rule not in RULES:
        return "The access rule must be restricted, unrestricted or direct"
    old = state.rule_content
    if not old or old.get("rule") not in RULES:
        # A room without a valid rule is a private room: it keeps that rule or opens.
        old = {"rule": RESTRICTED, "visibility": visibility_of(RoomKind.PRIVATE)}
    if new.get("visibility", old.get("visibility")) != old.get("visibility"):
        return KIND_IS_FIXED
    if rule == old.get("rule"):
        return None
    if (old.get("rule"), rule) != (RESTRICTED, UNRESTRICTED):
        return ONE_WAY
    if state.kind is RoomKind.FORUM or listed:
        return FORUM_NOT_OPEN
    return None


def join_rule_problem(state: RoomState, new: Mapping) -> str | None:
    join_rule = new.get("join_rule")
    if state.kind is RoomKind.FORUM:
        return None if join_rule == "public" else FORUM_STAYS_PUBLIC
    return None if join_rule == "invite" else INVITE_ONLY


def encryption_problem(state: RoomState, new: Mapping) -> str | None:
    return _encryption_problem(state.kind, new)


def _encryption_problem(kind: RoomKind, new: Mapping) -> str | None:
    if kind is RoomKind.FORUM:
        return FORUM_UNENCRYPTED
    return None if new.get("algorithm") == MEGOLM else ALGORITHM


def history_problem(kind: RoomKind, new: Mapping) -> str | None:
    """A ``m.room.history_visibility``: readable by anyone only in forums."""
    visibility = new.get("history_visibility")
    if visibility not in HISTORY_VALUES:
        return "The history visibility must be invited, joined, shared or world_readable"
    if visibility == "world_readable" and kind is not RoomKind.FORUM:
        return HISTORY_STAYS_WITH_MEMBERS
    return None


def guest_access_problem(new: Mapping) -> str | None:
    """A ``m.room.guest_access``: guests never join (the server registers none either)."""
    return None if new.get("guest_access") == "forbidden" else GUESTS_STAY_OUT


def redaction_problem(redacted_type: str | None, content: Mapping | None = None) -> str | None:
    """A redaction of a room's current state event of this type (None: not a state event) with
    this content: a rule event, or a member event whose name it would strip (an external's
    marker with it)."""
    if redacted_type in RULE_EVENTS:
        return RULES_NOT_REDACTED
    if redacted_type == MEMBER and (content or {}).get("displayname") is not None:
        return NAMES_NOT_REDACTED
    return None


def level_floors(kind: RoomKind) -> dict[str, int]:
    """The minimum of each top-level required level (``users_default`` is 0 exactly)."""
    return {
        "events_default": 0,
        "state_default": STATE_FLOOR,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        # Anyone may join a forum: inviting there needs no moderator.
        "invite": 0 if kind is RoomKind.FORUM else 50,
    }


def event_floor(event_type: str) -> int:
    if event_type in EVENT_FLOORS:
        return EVENT_FLOORS[event_type]
    return 0 if event_type in MESSAGE_TYPES else STATE_FLOOR


def default_levels(kind: RoomKind) -> dict:
    """The power levels a new room gets: every minimum, nobody raised (creators of room
    version 12 hold unlimited power without being listed)."""
    events = {event_type: event_floor(event_type) for event_type in (*RULE_EVENTS, TOMBSTONE)}
    events.update({"m.room.server_acl": STATE_FLOOR, "m.room.topic": STATE_FLOOR})
    events.update(EVENT_FLOORS)
    return {"users": {}, "users_default": 0, "events": events, **level_floors(kind)}


def levels_problem(kind: RoomKind, old: Mapping | None, new: Mapping) -> str | None:
    """New power levels (``old`` None for a room being created): a required level may not go
    below its minimum, unless it was already lower (rooms made before the minimums)."""
    if problem := users_default_problem(new):
        return problem
    old_events, new_events = _events_of(old), _events_of(new)
    for key, floor in level_floors(kind).items():
        after = _top_level(new, key)
        if after < floor and (old is None or after < _top_level(old, key)):
            return f"{LEVELS_FLOOR}: {key} needs at least {floor}"
    for event_type in {*old_events, *new_events, *EVENT_FLOORS}:
        floor = event_floor(event_type)
        after = _event_level(new, new_events, event_type)
        if after < floor and (old is None or after < _event_level(old, old_events, event_type)):
            return f"{LEVELS_FLOOR}: {event_type} needs at least {floor}"
    return None


def _top_level(levels: Mapping, key: str) -> float:
    return _level(levels.get(key, SPEC_DEFAULTS[key]))


def _events_of(levels: Mapping | None) -> Mapping:
    events = (levels or {}).get("events", {})
    return events if isinstance(events, Mapping) else {}


def _event_level(levels: Mapping, events: Mapping, event_type: str) -> float:
    if event_type in events:
        return _level(events[event_type])
    default = "events_default" if event_type in MESSAGE_TYPES else "state_default"
    return _top_level(levels, default)


def users_default_problem(levels: Mapping | None) -> str | None:
    if levels and _level(levels.get("users_default", 0)) != 0:
        return USERS_DEFAULT
    return None


def raised_users(old: Mapping | None, new: Mapping) -> list[str]:
    """Users whose power level the new content raises above 0 (only they need checking)."""
    before = (old or {}).get("users", {})
    after = new.get("users", {})
    if not isinstance(after, Mapping):
        return []  # Synapse refuses malformed power levels after the module's check
    if not isinstance(before, Mapping):
        before = {}
    return [
        user
        for user, level in after.items()
        if _level(level) > 0 and _level(before.get(user, 0)) != _level(level)
    ]


def direct_chat_full(
    state: RoomState, newcomer: str | None = None, email_token: str | None = None
) -> bool:
    """Whether a direct chat has no room left for one more person (or email invitation).
    email_token: the newcomer's email invitation (:func:`email_invitation_token`), whose place
    they take."""
    if state.kind is not RoomKind.DIRECT:
        return False
    if newcomer is not None and state.membership(newcomer) in PRESENT:
        return False
    pending = state.pending_email_invites()
    taken = 1 if email_token is not None and email_token in pending else 0
    return len(state.people()) + len(pending) - taken >= 2


def email_invitation_token(member_content: Mapping) -> str | None:
    """The token of the email invitation an invite is made from (Synapse's exchange after
    ``3pid/onbind``), whose signature Synapse's auth rules check; None for any other."""
    third_party = member_content.get("third_party_invite")
    signed = third_party.get("signed") if isinstance(third_party, Mapping) else None
    token = signed.get("token") if isinstance(signed, Mapping) else None
    return token if isinstance(token, str) else None


_MASKED_ADDRESS = re.compile(r"[^@\s]?\.\.\.@[^@\s]+")


def identity_keys_of(content: Mapping) -> set[object]:
    """The identity keys a ``m.room.third_party_invite`` names (``public_key``, ``public_keys``)."""
    listed = content.get("public_keys")
    keys = [content.get("public_key")]
    keys += (
        [k.get("public_key") for k in listed if isinstance(k, Mapping)]
        if isinstance(listed, list)
        else []
    )
    return {k for k in keys if k is not None}


def email_invite_problem(
    state: RoomState, token: str, content: Mapping, accepted_keys: Collection[str]
) -> str | None:
    """A ``m.room.third_party_invite``; an empty content revokes it, which is always allowed.
    accepted_keys: the identity keys of this server and of its network's externals' server
    (one of them, alone, must sign the invitation)."""
    if not content:
        return None
    used = identity_keys_of(content)
    if len(used) != 1 or not used <= set(accepted_keys):
        return FOREIGN_IDENTITY_SERVER
    # What members see of the invited person: the masked address the identity service gives
    # (``j...@gmail.com``), never a name the sender made up ("Préfet [interieur.gouv.fr]").
    if not isinstance(content.get("display_name"), str) or not _MASKED_ADDRESS.fullmatch(
        content["display_name"]
    ):
        return EMAIL_INVITE_NAME
    if token not in state.pending_email_invites() and direct_chat_full(state):
        return DIRECT_FULL
    return None


# --- room creation -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CreationPlan:
    """Everything a ``createRoom`` request writes, judged before anything is: the state events
    (power levels included), the invitations (``invite`` and the member events of
    ``initial_state``) and the creators.  The externals among the people are checked apart."""

    kind: RoomKind
    preset: str
    visibility: str
    initial_state: list[dict]
    invitees: tuple[str, ...]
    email_invitees: tuple[str, ...]
    identity_servers: tuple[object, ...]  # the id_server of each email invitation
    additional_creators: tuple[str, ...]
    power_levels: Mapping  # the room's first power levels, first in initial_state

    def apply_to(self, config: dict) -> None:
        config["preset"] = self.preset
        config["visibility"] = self.visibility
        config["initial_state"] = self.initial_state
        config["invite"] = list(self.invitees)
        # Synapse writes initial_state's power levels first and then ignores any override.
        config.pop("power_level_content_override", None)

    def with_preset(self, preset: str) -> CreationPlan:
        return CreationPlan(**{**self.__dict__, "preset": preset})


def plan_creation(
    config: Mapping,
    *,
    creator: str | None = None,
    lifetimes_ms: Mapping[RoomKind, int] | None = None,
) -> CreationPlan:
    """Decide the kind of room a ``createRoom`` body asks for and every state event it writes,
    or raise :class:`RoomRuleError`.

    A client that sends no access rule gets one from its request: ``is_direct`` gives a direct
    chat, the ``public_chat`` preset (or a public join rule) a forum, anything else a private
    room.  A room open to externals is asked for with the rule ``unrestricted``.  Each state
    event of ``initial_state`` is judged as the same event sent later would be; its member
    events become invitations.  ``lifetimes_ms``: the message lifetime each kind of room is
    created with (its ``m.room.retention``; a client cannot supply one at creation).
    """
    if config.get("room_version", CREATOR_POWER_VERSIONS[0]) not in CREATOR_POWER_VERSIONS:
        raise RoomRuleError(ROOM_VERSION)
    supplied = _supplied_state(config.get("initial_state", []))
    visibility = config.get("visibility", "private")
    if visibility not in ("public", "private"):
        raise RoomRuleError("visibility must be public or private", malformed=True)
    preset = config.get("preset") or (PUBLIC_CHAT if visibility == "public" else PRIVATE_CHAT)
    if preset not in PRESETS:
        raise RoomRuleError(f"{preset!r} is not a valid preset", malformed=True)
    join_rule = (supplied.get((JOIN_RULES, "")) or {}).get("join_rule")
    # A public join rule makes a forum only when no preset says otherwise.
    public = preset == PUBLIC_CHAT or (not config.get("preset") and join_rule == "public")
    kind = _kind_asked(config, supplied, public=public)
    _check_shape(kind, visibility, join_rule, supplied)
    _check_supplied(kind, supplied)
    _check_writable(config, supplied, creator)
    invitees = _invitees(config.get("invite", []), supplied, creator)
    email_invitees = _email_invitees(config.get("invite_3pid", []))
    if kind is RoomKind.DIRECT and len(invitees) + len(email_invitees) > 1:
        raise RoomRuleError(DIRECT_FULL)
    creation_content = config.get("creation_content")
    if creation_content is None:
        creation_content = {}
    if not isinstance(creation_content, Mapping):
        raise RoomRuleError("creation_content must be an object", malformed=True)
    additional_creators = _additional_creators(kind, creation_content, invitees)
    # Invitees of trusted_private_chat become creators with unlimited power (room version
    # 12): the other person of a direct chat is that, nobody else.
    preset = TRUSTED_PRIVATE_CHAT if kind is RoomKind.DIRECT else preset
    if preset == TRUSTED_PRIVATE_CHAT and kind is not RoomKind.DIRECT:
        preset = PRIVATE_CHAT
    creators = {creator, *additional_creators, *(invitees if kind is RoomKind.DIRECT else ())}
    power_levels = _power_levels(kind, config, supplied, creators)
    return CreationPlan(
        kind=kind,
        preset=preset,
        visibility=visibility_of(kind),
        initial_state=[
            {"type": POWER_LEVELS, "state_key": "", "content": power_levels},
            *_initial_state(kind, supplied),
            *_retention_state(kind, lifetimes_ms or {}),
        ],
        invitees=invitees,
        email_invitees=email_invitees,
        identity_servers=tuple(item.get("id_server") for item in config.get("invite_3pid", [])),
        additional_creators=additional_creators,
        power_levels=power_levels,
    )


def _supplied_state(raw: object) -> dict[tuple[str, str], dict]:
    if not isinstance(raw, list):
        raise RoomRuleError("initial_state must be a list of state events", malformed=True)
    supplied: dict[tuple[str, str], dict] = {}
    for item in raw:
        if not (
            isinstance(item, Mapping)
            and isinstance(item.get("type"), str)
            and isinstance(item.get("state_key", ""), str)
            and isinstance(item.get("content"), Mapping)
        ):
            raise RoomRuleError(
                "each initial_state event needs a type, a content object and a string state_key",
                malformed=True,
            )
        # As Synapse does: a later event with the same type and state key wins.
        supplied[(item["type"], item.get("state_key", ""))] = dict(item["content"])
    return supplied


def _kind_asked(config: Mapping, supplied: Mapping, *, public: bool) -> RoomKind:
    is_direct = bool(config.get("is_direct"))
    rule_content = supplied.get((ACCESS_RULES, ""))
    rule = rule_content.get("rule") if rule_content is not None else None
    if rule_content is not None and rule not in RULES:
        raise RoomRuleError(
            "The access rule must be restricted, unrestricted or direct", malformed=True
        )
    rule = rule or (DIRECT if is_direct else RESTRICTED)
    if is_direct != (rule == DIRECT):
        raise RoomRuleError(
            "A direct chat (is_direct) has the access rule direct, and only a direct chat has it",
            malformed=True,
        )
    if rule == DIRECT:
        if public:
            raise RoomRuleError("A direct chat cannot be public")
        return RoomKind.DIRECT
    if rule == UNRESTRICTED:
        if public:
            raise RoomRuleError(
                "A room open to externals cannot be public: forums are never open to externals"
            )
        return RoomKind.OPEN
    kind = RoomKind.FORUM if public else RoomKind.PRIVATE
    if (rule_content or {}).get("visibility", visibility_of(kind)) != visibility_of(kind):
        raise RoomRuleError(
            "The access rule's visibility is public for a forum and private for any other room"
        )
    return kind


def _check_shape(kind: RoomKind, visibility: str, join_rule: str | None, supplied: Mapping) -> None:
    if visibility == "public" and kind is not RoomKind.FORUM:
        raise RoomRuleError(ONLY_FORUMS_LISTED)
    if kind is RoomKind.FORUM:
        if join_rule not in (None, "public"):
            raise RoomRuleError(FORUM_STAYS_PUBLIC)
        if (ENCRYPTION, "") in supplied:
            raise RoomRuleError(FORUM_UNENCRYPTED)
    elif join_rule not in (None, "invite"):
        raise RoomRuleError(INVITE_ONLY)


def _check_supplied(kind: RoomKind, supplied: Mapping[tuple[str, str], dict]) -> None:
    """The client's other state events, judged as the same events sent later."""
    for (event_type, state_key), content in supplied.items():
        if event_type == CREATE:
            raise RoomRuleError(CREATE_ONCE)
        if event_type == TOMBSTONE:
            raise RoomRuleError(UPGRADES_REFUSED)
        if event_type == THIRD_PARTY_INVITE:
            raise RoomRuleError(INITIAL_EMAIL_INVITES)
        if state_key != "":
            continue  # (a join rule or power levels under another key do nothing)
        if event_type == HISTORY_VISIBILITY and (problem := history_problem(kind, content)):
            raise RoomRuleError(problem)
        # No check of GUEST_ACCESS here: Element asks `can_join` for every room it creates, and
        # the room gets `forbidden` instead (_initial_state); set later, it is refused.
        if event_type == ENCRYPTION and (problem := _encryption_problem(kind, content)):
            raise RoomRuleError(problem)


def _check_writable(config: Mapping, supplied: Mapping, creator: str | None) -> None:
    """What Synapse would refuse once the room is half made: contents that are not canonical
    JSON, another person's state, a canonical alias that is not the room's own, events it
    validates against the server."""
    for part in ("initial_state", "creation_content", "power_level_content_override"):
        if not _canonical(config.get(part)):
            raise RoomRuleError(NOT_CANONICAL, malformed=True)
    contents = [*supplied.values(), {"name": config.get("name")}]
    contents.append({"topic": config.get("topic"), "m.topic": [{"body": config.get("topic")}]})
    if any(_size(content) > MAX_CONTENT_BYTES for content in contents) or any(
        len(key.encode()) > MAX_KEY_BYTES for pair in supplied for key in pair
    ):
        raise RoomRuleError(TOO_LARGE, malformed=True)
    for (event_type, state_key), content in supplied.items():
        if event_type in SET_LATER_TYPES:
            raise RoomRuleError(SET_LATER)
        if event_type != MEMBER and state_key.startswith("@") and state_key != creator:
            raise RoomRuleError(OTHERS_STATE)
        if event_type == CANONICAL_ALIAS and state_key == "":
            own = _own_alias(config, creator)
            named = [content.get("alias"), *_alt_aliases(content)]
            if any(alias is not None and alias != own for alias in named):
                raise RoomRuleError(OWN_ALIAS)


def _size(content: Mapping) -> int:
    return len(json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode())


def _canonical(value: object) -> bool:
    if isinstance(value, float):
        return False
    if isinstance(value, int) and not isinstance(value, bool):
        return abs(value) < 2**53
    if isinstance(value, Mapping):
        return all(_canonical(item) for item in value.values())
    if isinstance(value, list):
        return all(_canonical(item) for item in value)
    return True


def _own_alias(config: Mapping, creator: str | None) -> str | None:
    name = config.get("room_alias_name")
    if not isinstance(name, str) or creator is None:
        return None
    return f"#{name}:{creator.split(':', 1)[1]}"


def _alt_aliases(content: Mapping) -> list:
    alt = content.get("alt_aliases", [])
    return alt if isinstance(alt, list) else [alt]


def _invitees(raw: object, supplied: Mapping, creator: str | None) -> tuple[str, ...]:
    """``invite`` and the people ``initial_state`` invites, once each, in order."""
    invited = list(_strings(raw, "invite"))
    for (event_type, state_key), content in supplied.items():
        if event_type != MEMBER:
            continue
        if content.get("membership") != "invite" or state_key == creator:
            raise RoomRuleError(INITIAL_MEMBERS)
        invited.append(state_key)
    if creator is not None and creator in invited:
        raise RoomRuleError(OWN_INVITE)
    return tuple(dict.fromkeys(invited))


def _additional_creators(
    kind: RoomKind, creation_content: Mapping, invitees: tuple[str, ...]
) -> tuple[str, ...]:
    if "predecessor" in creation_content:
        raise RoomRuleError(UPGRADES_REFUSED)
    room_type = creation_content.get("type")
    if room_type is not None and (room_type != "m.space" or kind is RoomKind.DIRECT):
        raise RoomRuleError(ROOM_TYPES)
    creators = _strings(creation_content.get("additional_creators", []), "additional_creators")
    if creators and (kind is not RoomKind.DIRECT or not set(creators) <= set(invitees)):
        raise RoomRuleError(CREATORS_DIRECT_ONLY)
    return creators


def _power_levels(
    kind: RoomKind, config: Mapping, supplied: Mapping, creators: set[str | None]
) -> dict:
    """The room's first power levels: the kind's defaults, raised where the client asks
    (``initial_state``'s power levels, then ``power_level_content_override``, as Synapse
    applies them); creators hold unlimited power and are not listed (room version 12)."""
    levels = default_levels(kind)
    for asked in (supplied.get((POWER_LEVELS, "")), config.get("power_level_content_override")):
        if asked is None:
            continue
        _check_levels_shape(asked)
        for key, value in asked.items():
            if key in ("events", "users", "notifications"):
                levels[key] = {**levels.get(key, {}), **value}
            else:
                levels[key] = value
    levels["users"] = {u: v for u, v in levels["users"].items() if u not in creators}
    if problem := levels_problem(kind, None, levels):
        raise RoomRuleError(problem)
    return levels


def _check_levels_shape(levels: object) -> None:
    """What Synapse would refuse halfway through the creation, refused before it starts."""
    if not isinstance(levels, Mapping):
        raise RoomRuleError("power levels must be an object", malformed=True)
    for key, value in levels.items():
        if key in ("events", "users", "notifications"):
            if not isinstance(value, Mapping) or not all(
                isinstance(k, str) and _is_level(v) for k, v in value.items()
            ):
                raise RoomRuleError(
                    f"power levels: {key} must map names to integers", malformed=True
                )
        elif not _is_level(value):
            raise RoomRuleError(f"power levels: {key} must be an integer", malformed=True)
    users = levels.get("users", {})
    if not all(_is_user_id(user) for user in users):
        raise RoomRuleError("power levels: users must map user IDs to integers", malformed=True)


def _is_user_id(text: str) -> bool:
    """Synapse's own test (``UserID.from_string``): a sigil, a local part, a colon, a server."""
    local, colon, server = text[1:].partition(":")
    return text.startswith("@") and bool(colon) and bool(server)


def _is_level(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**53


def _initial_state(kind: RoomKind, supplied: Mapping[tuple[str, str], dict]) -> list[dict]:
    """After the power levels: the access rule, the join rule (Synapse then skips its
    preset's), the history visibility unless the client chose one, guest access forbidden, the
    client's other events (not its members: they are invited), and encryption last."""
    ours: dict[tuple[str, str], dict] = {
        (ACCESS_RULES, ""): {"rule": _rule_of(kind), "visibility": visibility_of(kind)},
        (JOIN_RULES, ""): {"join_rule": "public" if kind is RoomKind.FORUM else "invite"},
        (GUEST_ACCESS, ""): {"guest_access": "forbidden"},
    }
    if (HISTORY_VISIBILITY, "") not in supplied:
        # Invitees of a closed room do not read what was said before they were invited.
        ours[(HISTORY_VISIBILITY, "")] = {
            "history_visibility": "shared" if kind is RoomKind.FORUM else "invited"
        }
    rest = {
        key: content
        for key, content in supplied.items()
        if key not in ours and key[0] not in (MEMBER, POWER_LEVELS, ENCRYPTION)
    }
    if kind is not RoomKind.FORUM:
        rest[(ENCRYPTION, "")] = {"algorithm": MEGOLM}
    return [
        {"type": event_type, "state_key": state_key, "content": content}
        for (event_type, state_key), content in {**ours, **rest}.items()
    ]


def _retention_state(kind: RoomKind, lifetimes_ms: Mapping[RoomKind, int]) -> list[dict]:
    """The kind's lifetime as the room's retention policy. Synapse's own bounds
    (allowed_lifetime_min/max, rendered from the same settings) hold it in range."""
    if kind not in lifetimes_ms:
        return []
    return [{"type": RETENTION, "state_key": "", "content": {"max_lifetime": lifetimes_ms[kind]}}]


def _rule_of(kind: RoomKind) -> str:
    return {RoomKind.DIRECT: DIRECT, RoomKind.OPEN: UNRESTRICTED}.get(kind, RESTRICTED)


def _strings(raw: object, name: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        raise RoomRuleError(f"{name} must be a list of user IDs", malformed=True)
    return tuple(raw)


def _email_invitees(raw: object) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(item, Mapping) for item in raw):
        raise RoomRuleError("invite_3pid must be a list of objects", malformed=True)
    if any(item.get("medium") != "email" for item in raw):
        raise RoomRuleError("Only email addresses can be invited")
    addresses = [item.get("address") for item in raw]
    if not all(isinstance(address, str) for address in addresses):
        raise RoomRuleError("each invite_3pid needs an address", malformed=True)
    return tuple(addresses)


def raised_in(levels: Mapping) -> set[str]:
    """Users the power-levels content gives a level above 0."""
    return set(raised_users(None, levels))
