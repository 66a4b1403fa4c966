# SPDX-License-Identifier: AGPL-3.0-or-later
"""Announcements: a message in French and English, as Synapse's server notices, to every agent,
to the agents of one domain or to one user, sent by a background job whose progress (delivered,
failed) the console shows."""

from flask import Flask

from admin_console.announcements.delivery import RESUME_CHECK_SECONDS, resume_interrupted
from admin_console.announcements.views import bp
from admin_console.periodic import Periodic

__all__ = ["bp", "init_app"]


def init_app(app: Flask) -> None:
    """Take over deliveries cut off by a restart (unless testing: tests call it themselves)."""
    every = app.config.get("ANNOUNCEMENT_RESUME_SECONDS", RESUME_CHECK_SECONDS)
    if not app.testing and every:
        Periodic("announcements", every, lambda: resume_interrupted(app)).start()
