"""Operator login and logout (flask-login) with lockout; every other page requires a login."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from flask import Blueprint, Flask, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from flask_login import LoginManager, current_user, login_user, logout_user

from admin_console import audit, db, lockout, operators
from admin_console.forms import LoginForm, LogoutForm

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = lazy_gettext("Please log in to use the console.")
# A stolen session cookie used from elsewhere is dropped.
login_manager.session_protection = "strong"


@login_manager.user_loader
def _load_operator(operator_id: str):
    return operators.by_id(db.get_db(), operator_id)


def require_login():
    """Every blueprint but this one runs this before each request."""
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    return None


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    with db.connect(app.config["DATABASE"]) as connection:
        operators.ensure_first_operator(connection, Path(app.config["FIRST_OPERATOR_FILE"]))

    @app.before_request
    def _refresh_session_timeout():
        session.permanent = True  # PERMANENT_SESSION_LIFETIME applies, renewed on activity

    @app.context_processor
    def _logout_form():
        return {"logout_form": LogoutForm()}


def safe_next(target: str | None) -> str:
    # Only a path on this console, never an absolute URL elsewhere (open redirect).
    if target and target.startswith("/") and not target.startswith("//"):
        if not urlsplit(target).netloc and "\\" not in target:
            return target
    return url_for("health.page")


def _locked_message(seconds: int) -> str:
    minutes = max(1, (seconds + 59) // 60)
    return _(
        "Too many wrong passwords: this account is locked for %(minutes)d more minute(s). "
        "Try again later, or ask another operator.",
        minutes=minutes,
    )


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("health.page"))
    form = LoginForm()
    if not form.validate_on_submit():
        return render_template("login.html", form=form)
    connection, username = db.get_db(), form.username.data
    locked_for = lockout.seconds_locked(connection, username)
    if locked_for:
        audit.record("login", username, False, "locked", operator=username)
        flash(_locked_message(locked_for), "error")
        return render_template("login.html", form=form), 429
    operator = operators.authenticate(connection, username, form.password.data)
    if operator is None:
        lockout.record_failure(connection, username)
        audit.record("login", username, False, "wrong password", operator=username)
        locked_for = lockout.seconds_locked(connection, username)
        flash(_locked_message(locked_for) if locked_for else _("Wrong username or password."),
              "error")
        return render_template("login.html", form=form), 429 if locked_for else 401
    lockout.clear(connection, username)
    language = session.get("lang")
    session.clear()
    if language:
        session["lang"] = language
    login_user(operator)
    audit.record("login", username, True)
    return redirect(safe_next(request.args.get("next")))


@bp.post("/logout")
def logout():
    # CSRFProtect has already refused a POST without a valid token.
    if current_user.is_authenticated:
        audit.record("logout", current_user.username, True)
    logout_user()
    session.clear()
    return redirect(url_for("auth.login"))
