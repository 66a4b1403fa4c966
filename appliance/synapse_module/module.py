# SPDX-License-Identifier: AGPL-3.0-or-later
"""ApplianceModule: the class Synapse loads.  It checks Synapse, then only wires; each rule lives
in its concern.

Wiring, one style: the stores (the module's tables, and the state each process keeps fresh)
are started, then every concern is an object whose ``register()`` registers its callbacks or
HTTP resources with the module API.  Every concern runs on every process (a worker serves the
requests it receives); only table creation and seeding are left to the process that runs
background tasks (see :mod:`.module_tables`).  Nothing here calls a Synapse internal a worker
lacks: :func:`.synapse_internals.check_synapse` verifies every reach on the process itself
before anything is registered, and stops Synapse with what changed.
"""

from __future__ import annotations

import logging
from typing import Protocol

from synapse.module_api import ModuleApi

from appliance import __version__
from appliance.synapse_module.accounts.display_names import DisplayNames
from appliance.synapse_module.accounts.domain_store import DomainStore
from appliance.synapse_module.accounts.identity_lookup import IdentityInfoResource
from appliance.synapse_module.accounts.new_account_mail import NewAccountMail
from appliance.synapse_module.accounts.new_account_mail_store import NewAccountMailStore
from appliance.synapse_module.accounts.password_login import ExternalsOnlyPasswordLogin
from appliance.synapse_module.accounts.profile_privacy import ProfilePrivacy
from appliance.synapse_module.accounts.registration import RegistrationPolicy
from appliance.synapse_module.accounts.validity import AccountValidity
from appliance.synapse_module.accounts.validity_mail import RenewalMail
from appliance.synapse_module.accounts.validity_resources import RenewalPage, ValidityResource
from appliance.synapse_module.accounts.validity_store import ValidityStore
from appliance.synapse_module.admin_api.domains import DomainsResource
from appliance.synapse_module.admin_api.invitations import InvitationsResource
from appliance.synapse_module.admin_api.quarantine import QuarantineResource
from appliance.synapse_module.admin_api.statistics import StatisticsResource
from appliance.synapse_module.admin_api.users import UserListResource
from appliance.synapse_module.config import ModuleConfig, parse_module_config
from appliance.synapse_module.directory.user_search import DirectoryFilter
from appliance.synapse_module.externals.identity_key import IdentityKey
from appliance.synapse_module.externals.identity_server import (
    IdentityServiceResource,
    IdentityTokens,
)
from appliance.synapse_module.externals.invitation_mail import InvitationMail
from appliance.synapse_module.externals.invitations import Invitations
from appliance.synapse_module.externals.invite_api import InvitationPage, InviteExternalResource
from appliance.synapse_module.externals.policy import ExternalDirectory, ExternalRegistration
from appliance.synapse_module.externals.relayed_invitations import RelayedInvitations
from appliance.synapse_module.externals.store import ExternalStore
from appliance.synapse_module.federation.externals_relay import ExternalsRelay
from appliance.synapse_module.federation.onbind import OnBind
from appliance.synapse_module.federation.peer_accounts import PeerAccounts
from appliance.synapse_module.federation.peer_directory import PeerDirectory
from appliance.synapse_module.federation.peer_domains import NetworkDomainsResource, PeerDomains
from appliance.synapse_module.federation.peer_invitations import PeerInvitations
from appliance.synapse_module.federation.peers import Network
from appliance.synapse_module.federation.room_lists import RemoteRoomLists
from appliance.synapse_module.federation.rules import FederationRules
from appliance.synapse_module.media.scan import MediaScanner
from appliance.synapse_module.media.scan_store import ScanStore
from appliance.synapse_module.module_tables import ModuleTables
from appliance.synapse_module.rooms.kinds import KIND_SETTING_NAMES
from appliance.synapse_module.rooms.last_admin import LastAdmin
from appliance.synapse_module.rooms.rules import RoomRules
from appliance.synapse_module.synapse_internals import (
    USERS_INDEXES,
    SynapseInternals,
    check_synapse,
)

logger = logging.getLogger(__name__)


class Startable(Protocol):
    def start(self) -> None: ...


class Concern(Protocol):
    def register(self) -> None: ...


class ApplianceModule:
    def __init__(self, config: ModuleConfig, api: ModuleApi):
        check_synapse(api)  # before anything is registered: raises SynapseChanged
        internals = SynapseInternals(api)

        domains = DomainStore(api, config.allowed_domains)
        externals = ExternalStore(api)
        key, tokens, scans = IdentityKey(api), IdentityTokens(api), ScanStore(api)
        # The user list does not wait for its indexes on Synapse's users table.
        user_list_indexes = ModuleTables(api, "appliance_user_list_indexes", USERS_INDEXES)
        stores: list[Startable] = [domains, externals, key, tokens, scans, user_list_indexes]
        for store in stores:
            store.start()

        allowlist = domains.current
        network = Network(config.federation, api.server_name)
        directory = ExternalDirectory(api, externals, network)
        mail = InvitationMail(api)
        peer_accounts = PeerAccounts(
            api, network, allowlist, internals, is_external=directory.is_external
        )
        # An unknown address is invited on the network's externals' server, if it has one.
        relay = ExternalsRelay(api, network, allowlist, internals)
        invitations = Invitations(
            api,
            externals,
            directory,
            allowlist,
            key,
            mail,
            config.invitation_limits,
            network=network,
            peer_accounts=peer_accounts,
            exchange=OnBind(key, internals).exchange,  # invitations into peers' rooms
            relay=relay,
        )
        # On the externals' server: agents peers' invitations into their rooms, stored here.
        relayed = RelayedInvitations(api, invitations, network)
        self.concerns: list[Concern] = [
            # accounts: who may register, and Tchap's domain lookup
            RegistrationPolicy(api, allowlist, invitations.standing, network.owner_of),
            IdentityInfoResource(api, allowlist, network),
            # externals and email invitations (an invitation lets its address register)
            ExternalRegistration(api, directory, allowlist, invitations.complete_for),
            invitations,
            IdentityServiceResource(
                api,
                tokens,
                key,
                invitations,
                directory,
                internals,
                network=network,
                relay=relay,
                relayed=relayed,
            ),
            InviteExternalResource(api, invitations, internals, relay),
            InvitationPage(api, invitations, mail),
            # rooms and the directory
            RoomRules(
                api,
                directory,
                invitations,
                key,
                {KIND_SETTING_NAMES[kind]: ms for kind, ms in config.room_lifetimes_ms},
                relay,
            ),
            LastAdmin(api, directory),  # a room never loses its last administrator
            DirectoryFilter(api, directory, internals),
            # names and profiles, judged by the externals' record (after the room rules, whose
            # refusal of an external's member event without the marker answers first)
            DisplayNames(api, directory),
            ProfilePrivacy(api, directory, internals),
            # federation: users and rooms of other servers
            FederationRules(api, network, directory),
            NetworkDomainsResource(api, allowlist),
            PeerDomains(api, network, config.federation.domains_refresh_seconds),
            peer_accounts,  # which account of a peer holds an address (email invitations)
            PeerDirectory(api, network, directory, internals),  # agents find peers' agents
            RemoteRoomLists(network, directory, internals),  # peers' forums, for agents
            PeerInvitations(api, invitations, network, config.federation.domains_refresh_seconds),
            # media
            MediaScanner(api, config.clamd, scans),
            # the console's admin endpoints
            DomainsResource(api, domains),
            QuarantineResource(api, scans),
            UserListResource(api),
            StatisticsResource(api),
            InvitationsResource(api, externals, invitations),
        ]
        if not config.agents_password_login:
            # Agents sign in through single sign-on; externals keep their password.
            self.concerns.append(ExternalsOnlyPasswordLogin(api, directory.is_external, internals))
        if config.account_validity is not None:
            # Accounts expire unless renewed: callbacks, renewal page, the console's endpoint.
            validity_store = ValidityStore(api)
            validity_store.start()
            renewal_mail = RenewalMail(api)
            validity = AccountValidity(
                api, config.account_validity, validity_store, renewal_mail, internals
            )
            self.concerns += [
                validity,
                RenewalPage(api, validity, renewal_mail),
                ValidityResource(api, validity),
            ]
        # Every new account with an address gets the mails, whatever made it (if the setting
        # says so); an account whose address is replaced keeps them (always).
        new_account_mail_store = NewAccountMailStore(api)
        new_account_mail_store.start()
        self.concerns.append(
            NewAccountMail(
                api,
                new_account_mail_store,
                internals,
                for_new_users=config.notifications_enabled_for_new_users,
            )
        )
        for concern in self.concerns:
            concern.register()
        logger.info(
            "appliance module %s loaded: %d allowed domain entries, clamd at %s:%d",
            __version__,
            len(config.allowed_domains),
            config.clamd.host,
            config.clamd.port,
        )

    @staticmethod
    def parse_config(config: dict) -> ModuleConfig:
        return parse_module_config(config)
