# SPDX-License-Identifier: AGPL-3.0-or-later
"""The statistics page and its CSV export (audited, as the user list's export is).

The window is one of WINDOWS days: the module accepts 1 to 366, the page offers a few."""

from __future__ import annotations

from flask import Blueprint, Response, render_template, request
from flask_babel import gettext as _

from admin_console import audit
from admin_console.auth import require_login
from admin_console.charts import daily_chart
from admin_console.csv_export import csv_lines
from admin_console.synapse_admin import client
from admin_console.synapse_admin.statistics import DAY_COLUMNS, Statistics, usage_statistics

bp = Blueprint("statistics", __name__, url_prefix="/statistics")
bp.before_request(require_login)
WINDOWS = (7, 30, 90, 366)
DEFAULT_WINDOW = 30


def window_arg() -> int:
    """The days asked for, if the page offers them; else the default."""
    days = request.args.get("days", type=int)
    return days if days in WINDOWS else DEFAULT_WINDOW


def charts(stats: Statistics) -> list:
    def chart(title: str, unit: str, column: str):
        return daily_chart(title, unit, stats.series(column), stats.first_day, stats.last_day)

    return [
        chart(_("Active agents per day"), _("agents"), "active_agents"),
        chart(_("Active externals per day"), _("externals"), "active_externals"),
        chart(_("Registrations of agents per day"), _("accounts"), "registered_agents"),
        chart(_("Messages per day"), _("messages"), "messages"),
    ]


@bp.get("/")
def page():
    days = window_arg()
    stats = usage_statistics(client(), days)
    return render_template(
        "statistics/page.html", stats=stats, charts=charts(stats), days=days, windows=WINDOWS
    )


@bp.get("/export.csv")
def export():
    """The per-day figures of the window as CSV; who exported what is in the audit log."""
    days = window_arg()
    # Fetched before answering: Synapse down gives the error page, not a broken file.
    stats = usage_statistics(client(), days)
    audit.record("statistics.export", f"days={days}", ok=True)
    rows = ([str(row[column]) for column in DAY_COLUMNS] for row in stats.per_day)
    return Response(
        csv_lines(DAY_COLUMNS, rows),
        mimetype="text/csv",
        headers={"Content-Disposition": f"attachment; filename=statistics-{days}-days.csv"},
    )
