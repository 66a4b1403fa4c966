# SPDX-License-Identifier: AGPL-3.0-or-later
"""Statistics: how many agents use the service, per day, month and domain; registrations,
rooms created by kind, messages; charts, a table, and a CSV export. Counts only."""

from admin_console.statistics.views import bp

__all__ = ["bp"]
