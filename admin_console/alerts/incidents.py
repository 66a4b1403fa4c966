# SPDX-License-Identifier: AGPL-3.0-or-later
"""Which mails to send: once when a condition turns red, a reminder every `reminder_seconds`
while it stays red, once when it is green again. Pure: the runner applies the result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from admin_console.alerts.conditions import Condition
from admin_console.alerts.store import Incident

Kind = Literal["opened", "reminder", "recovered"]


@dataclass(frozen=True)
class Notice:
    kind: Kind
    condition: str
    summary: str
    since: float  # when the incident opened


def decide(
    conditions: list[Condition],
    incidents: dict[str, Incident],
    *,
    now: float,
    reminder_seconds: float,
) -> list[Notice]:
    notices = []
    for condition in conditions:
        incident = incidents.get(condition.name)
        if condition.red and incident is None:
            notices.append(Notice("opened", condition.name, condition.summary, now))
        elif condition.red and incident and now - incident.last_mailed_at >= reminder_seconds:
            notices.append(
                Notice("reminder", condition.name, condition.summary, incident.opened_at)
            )
        elif not condition.red and incident is not None:
            notices.append(
                Notice("recovered", condition.name, condition.summary, incident.opened_at)
            )
    return notices
