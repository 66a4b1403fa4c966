"""How long an operator's login lasts: SESSION_TIMEOUT_MINUTES without activity, and
ABSOLUTE_LIFETIME_HOURS at most however active.

The login and last-activity instants are kept in the signed session and checked by the
console on every request, so the browser's cookie expiry is not what ends a login. The pages
that reload themselves (health, a room deletion's progress) reload through a URL carrying
AUTO_REFRESH_ARG: such a reload is not activity, so a tab left open does not keep a login alive.
"""

from __future__ import annotations

from flask import current_app, request, session

from admin_console.clock import now
from admin_console.pagination import this_page_url

ABSOLUTE_LIFETIME_HOURS = 12
AUTO_REFRESH_ARG = "auto"
_LOGIN_AT = "login_at"
_LAST_ACTIVITY = "last_activity"


def start() -> None:
    """At login."""
    session[_LOGIN_AT] = session[_LAST_ACTIVITY] = now()
    session.permanent = True  # the cookie outlives the browser, up to PERMANENT_SESSION_LIFETIME


def ended() -> str | None:
    """Why this login is over ("idle" or "lifetime"), or None while it lasts."""
    login_at, last_activity = _instant(_LOGIN_AT), _instant(_LAST_ACTIVITY)
    if login_at is None or last_activity is None:
        return "lifetime"  # a session from before these limits: fail closed
    moment = now()
    if moment - login_at > ABSOLUTE_LIFETIME_HOURS * 3600:
        return "lifetime"
    if moment - last_activity > current_app.config["SESSION_TIMEOUT_MINUTES"] * 60:
        return "idle"
    return None


def _instant(key: str) -> float | None:
    value = session.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def note_activity() -> None:
    """A request the operator made (not an automatic reload) keeps the login alive."""
    if request.args.get(AUTO_REFRESH_ARG) != "1":
        session[_LAST_ACTIVITY] = now()


def auto_refresh_url() -> str:
    """This page's URL for its own automatic reload."""
    return this_page_url(**{AUTO_REFRESH_ARG: 1})
