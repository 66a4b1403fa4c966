# SPDX-License-Identifier: AGPL-3.0-or-later
"""The audit log: `record()` for every operator action, and its page (search, CSV export).

Entries are kept AUDIT_RETENTION_DAYS (appliance.yaml: console.audit_retention_days): each new
entry deletes those past that age, through the index on time, so the log cannot grow forever
(failed logins, which anyone can cause, are entries too).
"""

from __future__ import annotations

from flask import current_app
from flask_login import current_user

from admin_console import clock, db
from admin_console.audit import store

DEFAULT_RETENTION_DAYS = 400


def record(
    action: str, target: str, *, ok: bool, detail: str = "", operator: str | None = None
) -> None:
    """Add an entry for the logged-in operator (or the one named, e.g. at login)."""
    who = operator if operator is not None else current_user.username
    connection, now = db.get_db(), clock.now()
    store.add(connection, operator=who, action=action, target=target, ok=ok, detail=detail, at=now)
    days = current_app.config.get("AUDIT_RETENTION_DAYS", DEFAULT_RETENTION_DAYS)
    store.prune(connection, now - days * 86400)
