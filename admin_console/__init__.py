# SPDX-License-Identifier: AGPL-3.0-or-later
"""The admin console: a Flask app for the sysadmins who run the appliance."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

from flask import Flask, redirect, url_for
from flask_wtf.csrf import CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from admin_console import (
    alerts,
    announcements,
    auth,
    db,
    domains,
    errors,
    federation,
    health,
    health_history,
    i18n,
    invitations,
    media,
    reports,
    retention,
    rooms,
    security_headers,
    session_limits,
    statistics,
    template_helpers,
    users,
)
from admin_console.audit import views as audit_views
from admin_console.operators import views as operator_views
from admin_console.second_factor import views as second_factor_views
from admin_console.users import expiry
from appliance.operations.disk_reserve import DiskReserve

CONFIG_ENV = "APPLIANCE_CONSOLE_CONFIG"
HEALTH_SAMPLE_SECONDS = 60
csrf = CSRFProtect()


def _load_config(app: Flask, test_config: dict | None) -> None:
    if test_config is None:
        config_file = os.environ.get(CONFIG_ENV)
        if not config_file:
            raise RuntimeError(f"{CONFIG_ENV} must name the console's config file")
        app.config.from_file(config_file, load=json.load)
    else:
        app.config.from_mapping(test_config)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = Path(app.config["SECRET_KEY_FILE"]).read_text().strip()
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="appliance_console",
        # The server's record of a login ends it (session_limits, sessions); the cookie only
        # outlives the browser up to the absolute lifetime and is not re-sent on every request.
        SESSION_REFRESH_EACH_REQUEST=False,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=session_limits.ABSOLUTE_LIFETIME_HOURS),
    )


def _trust_proxies(app: Flask) -> None:
    """Behind nginx, the client's address (for the login lockout) is in X-Forwarded-For.

    TRUSTED_PROXIES is how many proxies in front set it (nginx: 1); with 0, the default, the
    header is ignored, since anyone reaching the console directly could write it.
    """
    proxies = int(app.config.get("TRUSTED_PROXIES", 0))
    if proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)


def _start_sampler(app: Flask) -> None:
    every = app.config.get("HEALTH_SAMPLE_SECONDS", HEALTH_SAMPLE_SECONDS)
    if app.testing or not every:
        return  # tests take samples themselves
    health_history.start_sampler(
        app.config["DATABASE"], app.config["SYNAPSE_URL"], Path(app.config["STATE_DIR"]), every
    )


def _keep_disk_reserve(app: Flask) -> None:
    """Room for logging in on a full disk (appliance.operations.disk_reserve): kept, or given
    back, before each request and at start."""
    reserve = DiskReserve(Path(app.config["STATE_DIR"]))
    reserve.keep()
    app.before_request(reserve.keep)


def create_app(test_config: dict | None = None) -> Flask:
    app = Flask(__name__)
    _load_config(app, test_config)
    _trust_proxies(app)
    if app.config.get("STATE_DIR"):
        _keep_disk_reserve(app)
    csrf.init_app(app)
    db.init_app(app)
    alerts.init_app(app)
    announcements.init_app(app)
    auth.init_app(app)
    i18n.init_app(app)
    security_headers.init_app(app)
    errors.init_app(app)
    template_helpers.init_app(app)
    for blueprint in (
        auth.bp,
        health.bp,
        users.bp,
        expiry.bp,
        domains.bp,
        rooms.bp,
        media.bp,
        audit_views.bp,
        operator_views.bp,
        second_factor_views.bp,
        invitations.bp,
        federation.bp,
        reports.bp,
        announcements.bp,
        retention.bp,
        statistics.bp,
    ):
        app.register_blueprint(blueprint)
    _start_sampler(app)

    @app.get("/")
    def index():
        return redirect(url_for("health.page"))

    return app
