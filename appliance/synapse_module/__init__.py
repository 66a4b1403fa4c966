"""The appliance's Synapse module: loaded by Synapse through `modules:` in homeserver.yaml."""

from appliance.synapse_module.module import ApplianceModule

__all__ = ["ApplianceModule"]
