# SPDX-License-Identifier: AGPL-3.0-or-later
"""Functions every template may call."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Flask
from flask_babel import format_datetime

from admin_console.pagination import page_url
from admin_console.session_limits import auto_refresh_url


def datetime_from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def init_app(app: Flask) -> None:
    app.jinja_env.globals.update(
        page_url=page_url,
        auto_refresh_url=auto_refresh_url,
        datetime_from_ms=datetime_from_ms,
        format_datetime=format_datetime,
    )
