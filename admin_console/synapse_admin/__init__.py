# SPDX-License-Identifier: AGPL-3.0-or-later
"""Synapse, seen from the console: one client (`client.py`) and one module per concern.

Blueprints import from here; nothing else in the console talks to Synapse.
"""

from admin_console.synapse_admin import (
    addresses,
    appliance,
    media,
    reports,
    retention,
    rooms,
    users,
    validity,
)
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
    "addresses",
    "appliance",
    "client",
    "media",
    "reports",
    "retention",
    "rooms",
    "users",
    "validity",
]
