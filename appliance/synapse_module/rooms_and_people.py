"""Wiring of the rooms-and-people concern: room kinds, externals, email invitations, the
identity service and the agents' directory (one object each, sharing the externals' record)."""

from __future__ import annotations

from synapse.module_api import ModuleApi

from appliance.synapse_module.accounts.display_names import register_display_names
from appliance.synapse_module.accounts.profile_privacy import register_profile_privacy
from appliance.synapse_module.accounts.registration import AllowlistSource
from appliance.synapse_module.admin_api.invitations import register_invitation_admin_api
from appliance.synapse_module.directory.user_search import DirectoryFilter
from appliance.synapse_module.externals.identity_key import IdentityKey
from appliance.synapse_module.externals.identity_server import (
    IdentityServiceResource,
    IdentityTokens,
    register_identity_service,
)
from appliance.synapse_module.externals.invitation_mail import InvitationMail
from appliance.synapse_module.externals.invitations import Invitations
from appliance.synapse_module.externals.invite_api import register_invite_api
from appliance.synapse_module.externals.policy import ExternalDirectory, ExternalRegistration
from appliance.synapse_module.externals.store import ExternalStore
from appliance.synapse_module.rooms.rules import RoomRules
from appliance.synapse_module.synapse_internals import SynapseInternals


def register_rooms_and_people(api: ModuleApi, allowlist: AllowlistSource) -> Invitations:
    """Register every callback and endpoint; the invitations answer the registration policy."""
    store, key, tokens = ExternalStore(api), IdentityKey(api), IdentityTokens(api)
    for startable in (store, key, tokens):
        startable.start()
    internals = SynapseInternals(api)
    directory = ExternalDirectory(api, store)
    mail = InvitationMail(api)
    invitations = Invitations(api, store, directory, allowlist, key, mail)
    invitations.register()
    ExternalRegistration(api, directory, allowlist, invitations.complete_for).register()
    RoomRules(api, directory, invitations, key).register()
    DirectoryFilter(api, directory, internals).register()
    register_display_names(api, directory)  # names and profiles judged by the same record
    register_profile_privacy(api, directory, internals)
    register_identity_service(
        api, IdentityServiceResource(api, tokens, key, invitations, directory, internals)
    )
    register_invite_api(api, invitations, mail, internals)
    register_invitation_admin_api(api, store, invitations)
    return invitations
