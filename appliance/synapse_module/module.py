"""ApplianceModule: the class Synapse loads. It only wires callbacks; each rule lives beside it."""

from __future__ import annotations

import logging

from synapse.module_api import ModuleApi

from appliance import __version__
from appliance.synapse_module.accounts.domain_store import DomainStore
from appliance.synapse_module.accounts.identity_lookup import register_identity_lookup
from appliance.synapse_module.accounts.registration import register_registration_policy
from appliance.synapse_module.admin_api.domains import register_domain_admin_api
from appliance.synapse_module.admin_api.quarantine import register_quarantine_api
from appliance.synapse_module.admin_api.users import register_user_list_api
from appliance.synapse_module.config import ModuleConfig, parse_module_config
from appliance.synapse_module.media.scan import register_media_scanning
from appliance.synapse_module.media.scan_store import ScanStore
from appliance.synapse_module.rooms_and_people import register_rooms_and_people

logger = logging.getLogger(__name__)


class ApplianceModule:
    def __init__(self, config: ModuleConfig, api: ModuleApi):
        self._config = config
        self._api = api
        # Each concern registers its own callbacks and resources (one file each):
        # registration policy (allowlist, identity), media scanning, room rules, admin endpoints.
        self._domains = DomainStore(api, config.allowed_domains)
        self._domains.start()
        # Rooms, externals and email invitations; an invitation lets its address register.
        invitations = register_rooms_and_people(
            api, self._domains.current, config.invitation_limits
        )
        register_registration_policy(api, self._domains.current, invitations.standing)
        register_domain_admin_api(api, self._domains)
        register_identity_lookup(api, self._domains.current)
        scan_store = ScanStore(api)
        register_media_scanning(api, config.clamd, scan_store)
        register_quarantine_api(api, scan_store)
        register_user_list_api(api)
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
