# SPDX-License-Identifier: AGPL-3.0-or-later
"""Display names that cannot lie, on every path Synapse offers to change one.

A display name is derived from the account's address at registration ("Pierre Dupont
[ac-paris.fr]", with " (external)" for an external: :mod:`appliance.addresses.identity`).  A
person may change the name before the ``[domain]`` tag, never the tag nor the marker
(:func:`~appliance.addresses.identity.display_name_problem` says what is allowed and why not).
Who is external comes from the module's record, never from a name.

The paths, and what closes each (Synapse 1.163):

* ``PUT /_matrix/client/v3/profile/{user}/displayname``: Synapse gives modules no callback that
  can refuse it (``on_profile_update`` only tells, after the name is stored), so homeserver.yaml
  turns it off (``enable_set_displayname: false``: 403 ``M_FORBIDDEN`` "Changing display name
  is disabled on this server", and ``m.set_displayname`` disabled in ``/capabilities``, which
  clients such as Element follow).
* ``PUT /_synapse/client/appliance/v1/profile/displayname`` (this module, same body as the
  Matrix endpoint, ``{"displayname": "..."}``): the checked way to change one's own name; the
  new name reaches the profile, the user directory and every room.  A refusal is 403
  ``M_FORBIDDEN`` with the rule's message (400 ``M_INVALID_PARAM`` if it is not text).
* ``m.room.member`` events (a per-room name, ``/myroomnick``; an inviter writing a name into
  an invite; a name written into a leave, which clients show in the timeline):
  ``check_event_allowed`` refuses any membership whose ``displayname`` is neither the person's
  current name nor a name the rule allows for that person; ``on_create_room`` does the same for
  member events in a new room's ``initial_state``, before anything is created.  Names of other
  servers' users are theirs to check.
* Registration: the name comes from the verified address (``registration.py``); nothing a
  client sends changes it.
* ``on_profile_update`` is the backstop: a change that did not come from a server admin (such
  as a first name set through Synapse by an account that had none) and breaks the rule is
  replaced by the derived name at once.

Server admins (the Admin API, the console) may set any name; the externals' concern still puts
the marker back on an external's (:mod:`appliance.synapse_module.externals.policy`).
"""

from __future__ import annotations

import logging

from synapse.module_api import (
    DirectServeJsonResource,
    EventBase,
    ModuleApi,
    ProfileInfo,
    Requester,
    StateMap,
    SynapseRequest,
    UserID,
    parse_json_object_from_request,
)
from synapse.module_api.errors import Codes, SynapseError

from appliance.addresses.email_address import EmailAddress, InvalidEmailAddress, parse_email
from appliance.addresses.identity import display_name_for, display_name_problem
from appliance.synapse_module.externals.policy import ExternalDirectory

logger = logging.getLogger(__name__)

DISPLAYNAME_PATH = "/_synapse/client/appliance/v1/profile/displayname"
NAME_NOT_TEXT = "displayname must be a string"
MEMBER = "m.room.member"


class DisplayNames:
    """The display-name rule applied to an account: its addresses and whether it is external."""

    def __init__(self, api: ModuleApi, directory: ExternalDirectory) -> None:
        self._api = api
        self._directory = directory

    def register(self) -> None:
        self._api.register_third_party_rules_callbacks(
            check_event_allowed=self.check_event_allowed,
            on_create_room=self.on_create_room,
            on_profile_update=self.on_profile_update,
        )
        self._api.register_web_resource(DISPLAYNAME_PATH, DisplayNameResource(self._api, self))

    async def problem(self, user_id: str, display_name: str) -> str | None:
        """Why the local ``user_id`` may not be shown as ``display_name`` (None: it may)."""
        addresses = await self._addresses(user_id)
        external = await self._directory.is_external(user_id)
        return display_name_problem(display_name, addresses, external=external)

    async def _addresses(self, user_id: str) -> list[EmailAddress]:
        addresses = []
        for threepid in await self._api.get_threepids_for_user(user_id):
            if threepid.get("medium") != "email":
                continue
            try:
                addresses.append(parse_email(threepid.get("address", "")))
            except InvalidEmailAddress:
                continue  # bound by an admin in a form this server would not verify
        return addresses

    async def check_event_allowed(
        self, event: EventBase, state_events: StateMap[EventBase]
    ) -> tuple[bool, dict | None]:
        """Third-party rules callback ``check_event_allowed``: the per-room name of a member.

        Returns:
            ``(True, None)`` when the event may go ahead unchanged.
        Raises:
            SynapseError: 403 ``M_FORBIDDEN`` with the rule's message (400 ``M_INVALID_PARAM``
            for a name that is not text), unless the sender is a server admin.
        """
        if event.type != MEMBER:
            return True, None
        name = event.content.get("displayname")
        error = await self._name_error(event.state_key, name)
        if error is None or await self._api.is_user_admin(event.sender):
            return True, None
        logger.info("refused the name %r in %s: %s", name, event.room_id, error.msg)
        raise error

    async def on_create_room(
        self, requester: Requester, config: dict, is_requester_admin: bool
    ) -> None:
        """Third-party rules callback ``on_create_room``: the member events a client puts in
        ``initial_state`` are checked before anything is written (``check_event_allowed``
        would refuse them only once the room and its creator's join exist).

        Raises:
            SynapseError: as :meth:`check_event_allowed`, unless the creator is a server admin.
        """
        initial_state = config.get("initial_state")
        if is_requester_admin or not isinstance(initial_state, list):
            return
        for event in initial_state:
            if not isinstance(event, dict) or event.get("type") != MEMBER:
                continue
            content, target = event.get("content"), event.get("state_key")
            if isinstance(content, dict) and isinstance(target, str):
                if error := await self._name_error(target, content.get("displayname")):
                    logger.info("refused a room with a false name: %s", error.msg)
                    raise error

    async def _name_error(self, target: str, name: object) -> SynapseError | None:
        """The refusal of ``name`` in a member event of ``target`` (None: it may go)."""
        if name is None or not self._api.is_mine(target):
            return None  # other servers' users' names are theirs to check
        if not isinstance(name, str):
            return SynapseError(400, NAME_NOT_TEXT, Codes.INVALID_PARAM)
        if name == await self._current_name(target):
            return None  # set at registration, by an admin or through the checked endpoint
        if problem := await self.problem(target, name):
            return SynapseError(403, problem, Codes.FORBIDDEN)
        return None

    async def _current_name(self, user_id: str) -> str | None:
        profile = await self._api.get_profile_for_user(UserID.from_string(user_id).localpart)
        return profile.display_name

    async def on_profile_update(
        self, user_id: str, new_profile: ProfileInfo, by_admin: bool, deactivation: bool
    ) -> None:
        """Third-party rules callback ``on_profile_update`` (told after the change; returns
        nothing): a name a user set through Synapse that breaks the rule is replaced by the
        derived one."""
        name = new_profile.display_name
        if by_admin or deactivation or name is None:
            return
        problem = await self.problem(user_id, name)
        if problem is None:
            return
        derived = await self._derived_name(user_id)
        logger.warning("display name %r of %s replaced by %r: %s", name, user_id, derived, problem)
        await self._api.set_displayname(UserID.from_string(user_id), derived)

    async def _derived_name(self, user_id: str) -> str:
        addresses = await self._addresses(user_id)
        if not addresses:
            return UserID.from_string(user_id).localpart
        external = await self._directory.is_external(user_id)
        return display_name_for(addresses[0], external=external)


class DisplayNameResource(DirectServeJsonResource):
    """``PUT`` :data:`DISPLAYNAME_PATH`: change one's own display name, checked."""

    def __init__(self, api: ModuleApi, names: DisplayNames) -> None:
        super().__init__()
        self._api = api
        self._names = names

    async def _async_render_PUT(self, request: SynapseRequest) -> tuple[int, dict]:
        user_id = (await self._api.get_user_by_req(request)).user.to_string()
        name = parse_json_object_from_request(request).get("displayname")
        if not isinstance(name, str):
            raise SynapseError(400, NAME_NOT_TEXT, Codes.INVALID_PARAM)
        if problem := await self._names.problem(user_id, name):
            logger.info("refused the name %r for %s: %s", name, user_id, problem)
            raise SynapseError(403, problem, Codes.FORBIDDEN)
        await self._api.set_displayname(UserID.from_string(user_id), name)
        return 200, {}
