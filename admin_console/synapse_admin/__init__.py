# SPDX-License-Identifier: AGPL-3.0-or-later
"""Synapse, seen from the console: one client (`client.py`) and one module per concern.

Blueprints import from here; nothing else in the console talks to Synapse.
"""

from admin_console.synapse_admin import appliance, media, rooms, users, validity
from admin_console.synapse_admin.client import (
    EndpointMissing,
    SynapseClient,
    SynapseRefused,
    SynapseUnavailable,
    client,
)

__all__ = [
    "EndpointMissing",
    "SynapseClient",
    "SynapseRefused",
    "SynapseUnavailable",
    "appliance",
    "client",
    "media",
    "rooms",
    "users",
    "validity",
]
