# SPDX-License-Identifier: AGPL-3.0-or-later
"""Reports: the events agents reported, and the operator's answer (redact, suspend or
deactivate the sender, dismiss). `open_report_count()` is what the health page shows."""

from admin_console.reports.views import bp, open_report_count

__all__ = ["bp", "open_report_count"]
