# SPDX-License-Identifier: AGPL-3.0-or-later
"""The audit log page: searchable, paged, exportable as CSV."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Blueprint, Response, current_app, render_template, request

from admin_console import db
from admin_console.audit import store
from admin_console.auth import require_login
from admin_console.csv_export import csv_lines
from admin_console.pagination import offset_arg

bp = Blueprint("audit", __name__, url_prefix="/audit")
bp.before_request(require_login)
PAGE_SIZE = 50
CSV_COLUMNS = ("time_utc", "operator", "action", "target", "result", "detail")


@bp.get("/")
def page():
    text = request.args.get("q", "").strip()
    offset = offset_arg()
    entries, total = store.search(db.get_db(), text, offset, PAGE_SIZE)
    return render_template(
        "audit/list.html",
        entries=entries,
        total=total,
        q=text,
        offset=offset,
        page_size=PAGE_SIZE,
    )


@bp.get("/export.csv")
def export():
    text = request.args.get("q", "").strip()
    # Its own connection: the response is streamed after the request's teardown closed g.db.
    connection = db.connect(current_app.config["DATABASE"])

    def rows() -> Iterator[str]:
        try:
            yield from csv_lines(CSV_COLUMNS, _cells(store.iterate(connection, text)))
        finally:
            connection.close()

    return Response(
        rows(),
        mimetype="text/csv",
        headers={"Content-Disposition": "attachment; filename=audit-log.csv"},
    )


def _cells(entries: Iterator[store.Entry]) -> Iterator[list[str]]:
    for entry in entries:
        yield [
            entry.when.strftime("%Y-%m-%d %H:%M:%S"),
            entry.operator,
            entry.action,
            entry.target,
            "ok" if entry.ok else "failed",
            entry.detail,
        ]
