"""Operator login and logout (flask-login); every other page requires a logged-in operator."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from flask import Blueprint, Flask, flash, redirect, render_template, request, session, url_for
from flask_login import LoginManager, current_user, login_required, login_user, logout_user

from admin_console import db, operators
from admin_console.forms import LoginForm, LogoutForm

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = "Please log in to use the console."
# A stolen session cookie used from elsewhere is dropped.
login_manager.session_protection = "strong"


@login_manager.user_loader
def _load_operator(operator_id: str):
    return operators.by_id(db.get_db(), operator_id)


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


def _safe_next(target: str | None) -> str:
    # Only a path on this console, never an absolute URL elsewhere (open redirect).
    if target and target.startswith("/") and not target.startswith("//"):
        if not urlsplit(target).netloc:
            return target
    return url_for("health.page")


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("health.page"))
    form = LoginForm()
    if form.validate_on_submit():
        operator = operators.authenticate(db.get_db(), form.username.data, form.password.data)
        if operator is not None:
            session.clear()
            login_user(operator)
            return redirect(_safe_next(request.args.get("next")))
        flash("Wrong username or password.", "error")
        return render_template("login.html", form=form), 401
    return render_template("login.html", form=form)


@bp.post("/logout")
@login_required
def logout():
    # CSRFProtect has already refused a POST without a valid token.
    logout_user()
    session.clear()
    return redirect(url_for("auth.login"))
