# SPDX-License-Identifier: AGPL-3.0-or-later
"""Allowed email domains: the list with its account counts, add, bulk add, remove (live)."""

from admin_console.domains.views import bp

__all__ = ["bp"]
