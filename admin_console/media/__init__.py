# SPDX-License-Identifier: AGPL-3.0-or-later
"""Media: the files the antivirus refused, the signatures in use, quarantine/release/delete."""

from admin_console.media.views import bp

__all__ = ["bp"]
