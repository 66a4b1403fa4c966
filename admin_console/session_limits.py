# SPDX-License-Identifier: AGPL-3.0-or-later
"""How long an operator's login lasts: SESSION_TIMEOUT_MINUTES without activity, and
ABSOLUTE_LIFETIME_HOURS at most however active.

The login and last-activity instants are the server's record of the login (`sessions`), checked
by the console on every request, so neither the browser's cookie expiry nor an old copy of the
cookie decides when a login ends. The pages that reload themselves (health, a room deletion's
progress) reload through a URL carrying AUTO_REFRESH_ARG: such a reload is not activity, so a
tab left open does not keep a login alive.
"""

from __future__ import annotations

from flask import current_app, request

from admin_console.pagination import this_page_url
from admin_console.sessions import OperatorSession

ABSOLUTE_LIFETIME_HOURS = 12
AUTO_REFRESH_ARG = "auto"


def ended(login: OperatorSession, *, now: float) -> str | None:
    """Why this login is over ("idle" or "lifetime"), or None while it lasts."""
    if now - login.login_at > ABSOLUTE_LIFETIME_HOURS * 3600:
        return "lifetime"
    if now - login.last_activity > current_app.config["SESSION_TIMEOUT_MINUTES"] * 60:
        return "idle"
    return None


def is_activity() -> bool:
    """Whether this request is something the operator did (not a page's automatic reload)."""
    return request.args.get(AUTO_REFRESH_ARG) != "1"


def auto_refresh_url() -> str:
    """This page's URL for its own automatic reload."""
    return this_page_url(**{AUTO_REFRESH_ARG: 1})
