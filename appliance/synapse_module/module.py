"""ApplianceModule: the class Synapse loads. It only wires callbacks; each rule lives beside it."""

from __future__ import annotations

import logging

from synapse.module_api import ModuleApi

from appliance import __version__
from appliance.synapse_module.config import ModuleConfig, parse_module_config

logger = logging.getLogger(__name__)


class ApplianceModule:
    def __init__(self, config: ModuleConfig, api: ModuleApi):
        self._config = config
        self._api = api
        # Each concern registers its own callbacks and resources (one file each):
        # registration policy (allowlist, identity), media scanning, room rules, admin endpoints.
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
