# SPDX-License-Identifier: AGPL-3.0-or-later
"""Email invitations: who invited which address into which room, what became of it; revoke."""

from admin_console.invitations.views import bp

__all__ = ["bp"]
