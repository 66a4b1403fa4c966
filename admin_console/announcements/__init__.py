# SPDX-License-Identifier: AGPL-3.0-or-later
"""Announcements: a message in French and English, as Synapse's server notices, to every agent,
to the agents of one domain or to one user, sent by a background job whose progress (delivered,
failed) the console shows."""

from admin_console.announcements.views import bp

__all__ = ["bp"]
