# SPDX-License-Identifier: AGPL-3.0-or-later
"""Usage statistics through the appliance module's endpoint
(`/_synapse/client/appliance/v1/statistics`): counts per day, per month and per domain, never
contents. The module reads Synapse's tables; the console never does."""

from __future__ import annotations

from dataclasses import dataclass

from admin_console.synapse_admin.client import SynapseClient

STATISTICS = "/_synapse/client/appliance/v1/statistics"
DAY_COLUMNS = (
    "day",
    "active_agents",
    "active_externals",
    "registered_agents",
    "registered_externals",
    "messages",
    "rooms_private",
    "rooms_open_to_externals",
    "rooms_forum",
    "rooms_direct",
)


@dataclass(frozen=True)
class Statistics:
    days: int
    first_day: str
    last_day: str
    per_day: list[dict]  # oldest first, one dict per day with DAY_COLUMNS
    per_month: list[dict]  # {"month", "active_agents", "active_externals"}
    per_domain: list[dict]  # {"domain", "active_agents"}, over the whole window
    period: dict  # {"active_agents", "active_externals"}, over the whole window

    def series(self, column: str) -> list[int]:
        return [int(row[column]) for row in self.per_day]


def usage_statistics(synapse: SynapseClient, days: int) -> Statistics:
    """The figures of the last days (1-366, today included, in UTC)."""
    body = synapse.get(STATISTICS, params={"days": days})
    return Statistics(
        days=body["days"],
        first_day=body["first_day"],
        last_day=body["last_day"],
        per_day=body["per_day"],
        per_month=body["per_month"],
        per_domain=body["per_domain"],
        period=body["period"],
    )
