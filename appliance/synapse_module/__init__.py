# SPDX-License-Identifier: AGPL-3.0-or-later
"""The appliance's Synapse module: loaded by Synapse through `modules:` in homeserver.yaml."""

from appliance.synapse_module.module import ApplianceModule

__all__ = ["ApplianceModule"]
