# SPDX-License-Identifier: AGPL-3.0-or-later
"""The alert loop: every ALERT_CHECK_SECONDS, the console worker holding the lease runs the
health checks, mails each notice to the operators who opted in, records it in the audit log
(operator `alerts`) and keeps the incident in the database.

Each gunicorn worker runs this loop in a daemon thread; the lease (leases.py) lets one of them
act. A notice's mail is sent before its incident is saved: a worker that dies in between
sends it again rather than never.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from flask import Flask

from admin_console import audit, clock, db, leases
from admin_console.alerts import conditions, incidents, store
from admin_console.alerts.incidents import Notice
from admin_console.mailer import MailNotSent, send
from admin_console.periodic import Periodic

logger = logging.getLogger(__name__)
LEASE = "alerts"
CHECK_SECONDS = 60
REMINDER_SECONDS = 4 * 3600
# The lease outlives a slow round (checks time out after 3 s, a stalled relay after 10 s), so
# a live holder keeps it; a dead one's is taken over within this much longer than a round.
LEASE_GRACE_SECONDS = 30
AUDIT_OPERATOR = "alerts"
# French first, then English, as every mail of the appliance.
SUBJECTS = {
    "opened": "ALERTE {name} en panne / ALERT {name} is red",
    "reminder": "RAPPEL {name} toujours en panne / REMINDER {name} is still red",
    "recovered": "RÉTABLI {name} de nouveau au vert / RECOVERED {name} is green again",
}


def run_round(app: Flask, holder: str = leases.HOLDER) -> list[Notice]:
    """One round; the notices sent (none if another worker holds the lease)."""
    from admin_console.health import run_checks  # the blueprint imports the console's parts

    with app.app_context():
        connection, now = db.get_db(), clock.now()
        every = float(app.config.get("ALERT_CHECK_SECONDS", CHECK_SECONDS))
        seconds = 3 * every + LEASE_GRACE_SECONDS
        if not leases.acquire(connection, LEASE, holder=holder, seconds=seconds, now=now):
            return []
        found = conditions.from_checks(run_checks(), app.config)
        notices = incidents.decide(
            found,
            store.open_incidents(connection),
            now=now,
            reminder_seconds=float(app.config.get("ALERT_REMINDER_SECONDS", REMINDER_SECONDS)),
        )
        for notice in notices:
            _notify(app, connection, notice, now)
        return notices


def _notify(app: Flask, connection, notice: Notice, now: float) -> None:
    recipients = store.recipients(connection)
    failures = []
    subject = f"[{app.config['SERVER_NAME_MATRIX']}] " + SUBJECTS[notice.kind].format(
        name=notice.condition
    )
    for address in recipients:
        try:
            send(address, subject, _body(notice, app.config["SERVER_NAME_MATRIX"]))
        except MailNotSent as error:
            failures.append(f"{address}: {error}")
    detail = f"{notice.summary}; mailed to {len(recipients) - len(failures)} operator(s)"
    if failures:
        detail += "; not sent: " + "; ".join(failures)
    audit.record(
        f"alert.{notice.kind}",
        notice.condition,
        ok=not failures,
        detail=detail,
        operator=AUDIT_OPERATOR,
    )
    if notice.kind == "recovered":
        store.close_incident(connection, notice.condition)
    else:
        store.save_incident(
            connection, store.Incident(notice.condition, notice.since, now, notice.summary)
        )


def _body(notice: Notice, server: str) -> str:
    since = datetime.fromtimestamp(notice.since, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    name = notice.condition
    french, english = {
        "opened": (f"{name} est passé au rouge sur {server}.", f"{name} turned red on {server}."),
        "reminder": (
            f"{name} est au rouge sur {server} depuis le {since}.",
            f"{name} on {server} has been red since {since}.",
        ),
        "recovered": (
            f"{name} est de nouveau au vert sur {server} (au rouge depuis le {since}).",
            f"{name} on {server} is green again (red since {since}).",
        ),
    }[notice.kind]
    return (
        f"{french}\n\n{name} : {notice.summary}\n\n"
        "La page Santé de la console montre chaque vérification. Vous recevez ce courriel parce "
        "que vous avez demandé les alertes sur la page Opérateurs de la console ; la même page "
        "les arrête.\n\n---\n\n"
        f"{english}\n\n{name}: {notice.summary}\n\n"
        "The console's health page shows every check. You get this mail because you asked for "
        "alerts on the console's Operators page; the same page stops them.\n"
    )


class Runner(Periodic):
    """The loop in a daemon thread; `stop()` ends it after the current round and lets the
    lease go."""

    def __init__(self, app: Flask, every: float, holder: str = leases.HOLDER):
        super().__init__("alerts", every, lambda: run_round(app, holder))
        self.app, self.holder = app, holder

    def stop(self) -> None:
        super().stop()
        with self.app.app_context():
            leases.release(db.get_db(), LEASE, holder=self.holder)
