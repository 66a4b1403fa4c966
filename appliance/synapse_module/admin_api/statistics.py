# SPDX-License-Identifier: AGPL-3.0-or-later
"""Admin endpoint for the console's usage statistics:
``GET /_synapse/client/appliance/v1/statistics?days=N``.

Counts only, never contents: no message, name or address leaves this endpoint, only numbers
and the email domains of agents.  ``days`` (1-366, default 30) is the window: the last N days
in UTC, today included.  Answer::

    {"days": N, "first_day": "YYYY-MM-DD", "last_day": "YYYY-MM-DD",
     "per_day": [{"day", "active_agents", "active_externals", "registered_agents",
                  "registered_externals", "messages", "rooms_private",
                  "rooms_open_to_externals", "rooms_forum", "rooms_direct"}],   # oldest first
     "per_month": [{"month": "YYYY-MM", "active_agents", "active_externals"}],
     "per_domain": [{"domain", "active_agents"}],                           # over the window
     "period": {"active_agents", "active_externals"}}

* active: seen at least once that day (Synapse's ``user_daily_visits``, plus today's visits
  from ``user_ips`` that Synapse writes there only every five minutes); a month counts each
  user once, over the whole calendar month, for every month the window touches;
* agents and externals apart, by the module's record of externals; a domain is that of an
  agent's email address (an agent with two addresses counts for both domains);
* registrations: accounts created that day (guests and appservice users left out);
* messages: events of type ``m.room.message`` or ``m.room.encrypted`` stored on this server
  that day by their ``origin_server_ts`` (those of federated peers' users included);
* rooms: rooms created that day by this server's users, by the kind they have now, decided
  from their current state as ``rooms/kinds.py`` decides it (a room opened to externals
  since its creation counts as open); spaces are not rooms and are left out.

Cost: one pass over the window's visits per figure, as the plain query makes (externals are
counted by the same query kept to the module's few, and agents are the difference), one over
the users table, the window's events through Synapse's index on ``origin_server_ts``, and one
JSON decoding per room created in the window (``bench/bench_statistics.py`` measures it).
Every call needs a server admin's access token (see :mod:`.auth`).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

from synapse.module_api import (
    DirectServeJsonResource,
    LoggingTransaction,
    ModuleApi,
    SynapseRequest,
)

from appliance.synapse_module.admin_api.auth import require_server_admin
from appliance.synapse_module.admin_api.request_args import integer_arg
from appliance.synapse_module.rooms.kinds import KIND_SETTING_NAMES, kind_of
from appliance.synapse_module.synapse_internals import (
    DAY_MS,
    messages_by_day_txn,
    registrations_by_day_txn,
    rooms_created_txn,
    visitors_between_txn,
    visitors_by_day_txn,
    visitors_by_domain_txn,
)

STATISTICS_PATH = "/_synapse/client/appliance/v1/statistics"
DEFAULT_DAYS, MAX_DAYS = 30, 366
KIND_NAMES = {kind: name for name, kind in KIND_SETTING_NAMES.items()}
ROOM_COLUMNS = tuple(f"rooms_{name}" for name in KIND_SETTING_NAMES)
SPACE = "m.space"


class StatisticsResource(DirectServeJsonResource):
    def __init__(self, api: ModuleApi) -> None:
        super().__init__()
        self._api = api

    def register(self) -> None:
        """Serve STATISTICS_PATH (on every process: any may receive the request)."""
        self._api.register_web_resource(STATISTICS_PATH, self)

    async def _async_render_GET(self, request: SynapseRequest) -> tuple[int, dict]:
        await require_server_admin(self._api, request)
        days = integer_arg(request, "days", DEFAULT_DAYS, minimum=1, maximum=MAX_DAYS)
        today = datetime.fromtimestamp(time.time(), UTC).date()
        return 200, await self._api.run_db_interaction(
            "appliance_statistics", statistics_txn, days, today, self._api.server_name
        )


def day_ms(day: date) -> int:
    return (day - date(1970, 1, 1)).days * DAY_MS


def months_touched(first: date, last: date) -> list[tuple[date, date]]:
    """(first day, first day of the next month) of every calendar month from first to last."""
    months, start = [], first.replace(day=1)
    while start <= last:
        following = (start + timedelta(days=32)).replace(day=1)
        months.append((start, following))
        start = following
    return months


def room_kind_name(create_json: str, rules_json: str | None, join_json: str | None) -> str | None:
    """The kind's settings name (private, open_to_externals, forum, direct); None for a
    space.  The same decision as the room rules: no valid access rule is a private room."""
    if json.loads(create_json).get("content", {}).get("type") == SPACE:
        return None
    rule_content = json.loads(rules_json).get("content") if rules_json else None
    join_content = json.loads(join_json).get("content", {}) if join_json else {}
    return KIND_NAMES[kind_of(rule_content, join_content.get("join_rule"))]


def visitors_split_txn(
    txn: LoggingTransaction, start_ms: int, end_ms: int, today_ms: int
) -> tuple[int, int]:
    """(agents, externals) seen on a day in ``[start_ms, end_ms)``."""
    everyone = visitors_between_txn(txn, start_ms, end_ms, today_ms, externals_only=False)
    externals = visitors_between_txn(txn, start_ms, end_ms, today_ms, externals_only=True)
    return everyone - externals, externals


def statistics_txn(txn: LoggingTransaction, days: int, today: date, server_name: str) -> dict:
    # One transaction: every figure comes from the same snapshot.
    first = today - timedelta(days=days - 1)
    since_ms, today_ms = day_ms(first), day_ms(today)
    epoch_day = (first - date(1970, 1, 1)).days
    rows: dict[int, dict[str, Any]] = {
        epoch_day + offset: {
            "day": (first + timedelta(days=offset)).isoformat(),
            "active_agents": 0,
            "active_externals": 0,
            "registered_agents": 0,
            "registered_externals": 0,
            "messages": 0,
            **dict.fromkeys(ROOM_COLUMNS, 0),
        }
        for offset in range(days)
    }
    # Agents are every visitor but the externals (see synapse_internals: one pass each).
    visitors = visitors_by_day_txn(txn, since_ms, today_ms, externals_only=False)
    externals = visitors_by_day_txn(txn, since_ms, today_ms, externals_only=True)
    for day, count in visitors.items():
        if day // DAY_MS in rows:
            rows[day // DAY_MS]["active_agents"] = count - externals.get(day, 0)
            rows[day // DAY_MS]["active_externals"] = externals.get(day, 0)
    for number, external, count in registrations_by_day_txn(txn, since_ms):
        if number in rows:
            rows[number]["registered_externals" if external else "registered_agents"] += count
    for number, count in messages_by_day_txn(txn, since_ms):
        if number in rows:
            rows[number]["messages"] += count
    suffix = f":{server_name}"
    for creator, created_ms, create_json, rules_json, join_json in rooms_created_txn(txn, since_ms):
        kind = room_kind_name(create_json, rules_json, join_json)
        if creator.endswith(suffix) and kind is not None and created_ms // DAY_MS in rows:
            rows[created_ms // DAY_MS][f"rooms_{kind}"] += 1
    per_month = []
    for start, following in months_touched(first, today):
        agents, externals_seen = visitors_split_txn(txn, day_ms(start), day_ms(following), today_ms)
        per_month.append(
            {
                "month": start.strftime("%Y-%m"),
                "active_agents": agents,
                "active_externals": externals_seen,
            }
        )
    period_agents, period_externals = visitors_split_txn(txn, since_ms, today_ms + DAY_MS, today_ms)
    every_domain = visitors_by_domain_txn(txn, since_ms, today_ms, externals_only=False)
    external_domains = visitors_by_domain_txn(txn, since_ms, today_ms, externals_only=True)
    domains = {
        domain: count - external_domains.get(domain, 0)
        for domain, count in sorted(every_domain.items())
        if count > external_domains.get(domain, 0)
    }
    return {
        "days": days,
        "first_day": first.isoformat(),
        "last_day": today.isoformat(),
        "per_day": list(rows.values()),
        "per_month": per_month,
        "per_domain": [
            {"domain": domain, "active_agents": count} for domain, count in domains.items()
        ],
        "period": {"active_agents": period_agents, "active_externals": period_externals},
    }
