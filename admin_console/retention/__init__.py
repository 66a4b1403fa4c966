# SPDX-License-Identifier: AGPL-3.0-or-later
"""Retention: the message and media lifetimes of the settings (read-only: appliance.yaml is
the one input), and deleting old media at once."""

from admin_console.retention.views import bp

__all__ = ["bp"]
