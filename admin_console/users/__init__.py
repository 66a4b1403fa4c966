# SPDX-License-Identifier: AGPL-3.0-or-later
"""Users: search and page through accounts, a user's page, and the actions on an account."""

from admin_console.users import address  # noqa: F401  (its routes join the blueprint)
from admin_console.users.views import bp

__all__ = ["bp"]
