"""The four kinds of rooms and the rules each keeps, as pure functions over a room's state.

Rooms speak Tchap's state event ``im.vector.room.access_rules`` so that Tchap's clients work
unchanged: ``{"rule": "restricted" | "unrestricted" | "direct", "visibility": "public" | "private"}``.

=================  ==============  ==========  ===========  =========================
kind               rule            join rule   visibility   encrypted
=================  ==============  ==========  ===========  =========================
private            restricted      invite      private      yes
open to externals  unrestricted    invite      private      yes
forum              restricted      public      public       no, and never later
direct chat        direct          invite      private      yes; two people at most
=================  ==============  ==========  ===========  =========================

A room whose state has no access rule (made before the module, or by an administrator who
bypassed it) is a forum if its join rule is public and a private room otherwise.

Nothing here talks to Synapse: :mod:`.room_rules` feeds these functions the room's state and
the externals among the people concerned, and turns their answers into Matrix errors.  A
function that checks an event returns ``None`` when it is allowed, or the reason, written for
people, why it is not.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
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

PRIVATE_CHAT, TRUSTED_PRIVATE_CHAT, PUBLIC_CHAT = (
    "private_chat",
    "trusted_private_chat",
    "public_chat",
)
PRESETS = (PRIVATE_CHAT, TRUSTED_PRIVATE_CHAT, PUBLIC_CHAT)
PRESENT = ("join", "invite")  # the memberships that count as being in a room


class RoomKind(Enum):
    PRIVATE = "private room"
    OPEN = "room open to externals"
    FORUM = "forum"
    DIRECT = "direct chat"


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
FOREIGN_IDENTITY_SERVER = (
    "Email invitations must go through this server's own identity service: choose this "
    "server as identity server in your client"
)


def kind_of(rule_content: Mapping | None, join_rule: str | None) -> RoomKind:
    rule = rule_content.get("rule") if rule_content else None
    if rule == DIRECT:
        return RoomKind.DIRECT
    if rule == UNRESTRICTED:
        return RoomKind.OPEN
    visibility = rule_content.get("visibility") if rule_content else None
    if visibility == "public" or (visibility is None and join_rule == "public"):
        return RoomKind.FORUM
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
        """The tokens of email invitations not yet revoked."""
        return [
            key
            for (event_type, key), event in self._events.items()
            if event_type == THIRD_PARTY_INVITE and event.content
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
    if old is None:  # the room being created (or one made before the rules)
        if rule == UNRESTRICTED and (state.join_rule == "public" or listed):
            return FORUM_NOT_OPEN
        if rule == DIRECT and len(state.people()) > 2:
            return DIRECT_FULL
        return None
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
    if state.kind is RoomKind.FORUM:
        return FORUM_UNENCRYPTED
    return None if new.get("algorithm") == MEGOLM else ALGORITHM


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


def direct_chat_full(state: RoomState, newcomer: str | None = None) -> bool:
    """Whether a direct chat has no room left for one more person (or email invitation)."""
    if state.kind is not RoomKind.DIRECT:
        return False
    if newcomer is not None and state.membership(newcomer) in PRESENT:
        return False
    return len(state.people()) + len(state.pending_email_invites()) >= 2


def email_invite_problem(
    state: RoomState, token: str, content: Mapping, our_public_key: str | None
) -> str | None:
    """A ``m.room.third_party_invite``; an empty content revokes it, which is always allowed."""
    if not content:
        return None
    listed = content.get("public_keys")
    keys = [content.get("public_key")]
    keys += (
        [k.get("public_key") for k in listed if isinstance(k, Mapping)]
        if isinstance(listed, list)
        else []
    )
    if our_public_key is None or {k for k in keys if k is not None} != {our_public_key}:
        return FOREIGN_IDENTITY_SERVER
    if token not in state.pending_email_invites() and direct_chat_full(state):
        return DIRECT_FULL
    return None


# --- room creation -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CreationPlan:
    """What a ``createRoom`` request becomes; the people in it are checked separately."""

    kind: RoomKind
    preset: str
    visibility: str
    initial_state: list[dict]
    invitees: tuple[str, ...]
    email_invitees: tuple[str, ...]
    additional_creators: tuple[str, ...]
    power_levels: tuple[Mapping, ...]  # the override and an initial power-levels event

    def apply_to(self, config: dict) -> None:
        config["preset"] = self.preset
        config["visibility"] = self.visibility
        config["initial_state"] = self.initial_state

    def with_preset(self, preset: str) -> CreationPlan:
        return CreationPlan(**{**self.__dict__, "preset": preset})


def plan_creation(config: Mapping) -> CreationPlan:
    """Decide the kind of room a ``createRoom`` body asks for, or raise :class:`RoomRuleError`.

    A client that sends no access rule gets one from its request: ``is_direct`` gives a direct
    chat, the ``public_chat`` preset (or a public join rule) a forum, anything else a private
    room.  A room open to externals is asked for with the rule ``unrestricted``.
    """
    supplied = _supplied_state(config.get("initial_state", []))
    visibility = config.get("visibility", "private")
    if visibility not in ("public", "private"):
        raise RoomRuleError("visibility must be public or private", malformed=True)
    preset = config.get("preset") or (PUBLIC_CHAT if visibility == "public" else PRIVATE_CHAT)
    if preset not in PRESETS:
        raise RoomRuleError(f"{preset!r} is not a valid preset", malformed=True)
    join_rule = (supplied.get((JOIN_RULES, "")) or {}).get("join_rule")
    kind = _kind_asked(config, supplied, public=preset == PUBLIC_CHAT or join_rule == "public")
    _check_shape(kind, visibility, join_rule, supplied)
    invitees = _strings(config.get("invite", []), "invite")
    email_invitees = _email_invitees(config.get("invite_3pid", []))
    if kind is RoomKind.DIRECT and len(invitees) + len(email_invitees) > 1:
        raise RoomRuleError(DIRECT_FULL)
    power_levels = tuple(
        levels
        for levels in (config.get("power_level_content_override"), supplied.get((POWER_LEVELS, "")))
        if levels is not None
    )
    for levels in power_levels:
        if not isinstance(levels, Mapping):
            raise RoomRuleError("power levels must be an object", malformed=True)
        if problem := users_default_problem(levels):
            raise RoomRuleError(problem)
    creation_content = config.get("creation_content")
    if creation_content is None:
        creation_content = {}
    if not isinstance(creation_content, Mapping):
        raise RoomRuleError("creation_content must be an object", malformed=True)
    # Invitees of trusted_private_chat become creators with unlimited power (room version
    # 12): only the two people of a direct chat may be that.
    if preset == TRUSTED_PRIVATE_CHAT and kind is not RoomKind.DIRECT:
        preset = PRIVATE_CHAT
    return CreationPlan(
        kind=kind,
        preset=preset,
        visibility=visibility_of(kind),
        initial_state=_initial_state(kind, supplied),
        invitees=invitees,
        email_invitees=email_invitees,
        additional_creators=_strings(
            creation_content.get("additional_creators", []), "additional_creators"
        ),
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


def _initial_state(kind: RoomKind, supplied: Mapping[tuple[str, str], dict]) -> list[dict]:
    """The access rule, the join rule (Synapse then skips its preset's), the history
    visibility unless the client chose one, the client's events, and encryption last (any the
    client sent is replaced: Synapse would keep a malformed one)."""
    ours: dict[tuple[str, str], dict] = {
        (ACCESS_RULES, ""): {"rule": _rule_of(kind), "visibility": visibility_of(kind)},
        (JOIN_RULES, ""): {"join_rule": "public" if kind is RoomKind.FORUM else "invite"},
    }
    if (HISTORY_VISIBILITY, "") not in supplied:
        # Invitees of a closed room do not read what was said before they were invited.
        ours[(HISTORY_VISIBILITY, "")] = {
            "history_visibility": "shared" if kind is RoomKind.FORUM else "invited"
        }
    rest = {key: content for key, content in supplied.items() if key not in ours}
    rest.pop((ENCRYPTION, ""), None)
    if kind is not RoomKind.FORUM:
        rest[(ENCRYPTION, "")] = {"algorithm": MEGOLM}
    return [
        {"type": event_type, "state_key": state_key, "content": content}
        for (event_type, state_key), content in {**ours, **rest}.items()
    ]


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


def users_in(levels: Iterable[Mapping]) -> set[str]:
    """Users given a power level above 0 by any of these power-level contents."""
    return {user for content in levels for user in raised_users(None, content)}
