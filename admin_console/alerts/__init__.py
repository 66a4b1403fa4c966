# SPDX-License-Identifier: AGPL-3.0-or-later
"""Alerts: when a health check turns red, mail the operators who asked for it.

`conditions` turns the health checks into the conditions that alert, `store` keeps who asked
and the open incidents, a lease (admin_console.leases) makes one console worker the only one
that alerts, `incidents` decides what to send (once when red, a reminder, once on recovery),
`runner` is the background loop that ties them to the mailer and the audit log.
"""

from __future__ import annotations

from flask import Flask

from admin_console import db
from admin_console.alerts import store


def init_app(app: Flask) -> None:
    """Create the alerts' tables; start the loop unless testing (tests start it themselves)."""
    with db.connect(app.config["DATABASE"]) as connection:
        store.create_tables(connection)
    from admin_console.alerts.runner import CHECK_SECONDS, Runner

    every = app.config.get("ALERT_CHECK_SECONDS", CHECK_SECONDS)
    if not app.testing and every:
        Runner(app, every).start()
