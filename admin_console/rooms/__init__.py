"""Rooms: search and page, kind, members, publish, block, delete with purge progress."""

from admin_console.rooms.views import bp

__all__ = ["bp"]
