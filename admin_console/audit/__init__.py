"""The audit log: `record()` for every operator action, and its page (search, CSV export)."""

from __future__ import annotations

from flask_login import current_user

from admin_console import db
from admin_console.audit import store


def record(action: str, target: str, ok: bool, detail: str = "", operator: str | None = None) -> None:
    """Add an entry for the logged-in operator (or the one named, e.g. at login)."""
    who = operator if operator is not None else current_user.username
    store.add(db.get_db(), who, action, target, ok, detail)
