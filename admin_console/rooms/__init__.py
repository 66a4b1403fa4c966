# SPDX-License-Identifier: AGPL-3.0-or-later
"""Rooms: search and page, kind, members, publish, block, delete with purge progress."""

from admin_console.rooms.views import bp

__all__ = ["bp"]
