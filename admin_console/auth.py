# SPDX-License-Identifier: AGPL-3.0-or-later
"""Operator login and logout (flask-login) with lockout and session limits; every other page
requires a login.

A login is a server-side record (`sessions`): Flask-Login's user id in the signed cookie is
that record's random token, so ending the record ends the login wherever its cookie was copied.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from flask_login import LoginManager, current_user, login_url, login_user, logout_user

from admin_console import audit, db, lockout, operators, session_limits, sessions
from admin_console.clock import now
from admin_console.forms import LoginForm, LogoutForm
from admin_console.operators import roles
from admin_console.second_factor import store as second_factor_store

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = lazy_gettext("Please log in to use the console.")
# A stolen session cookie used from elsewhere is dropped.
login_manager.session_protection = "strong"


@login_manager.user_loader
def _load_login(token: str) -> sessions.OperatorSession | None:
    # None (anonymous) once the login was ended: logout, password change, operator removed.
    return sessions.find(db.get_db(), token)


def require_login():
    """Every blueprint but this one runs this before each request."""
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    ended = session_limits.ended(current_user, now=now())
    if ended:
        audit.record("logout", current_user.username, ok=True, detail=f"session ended: {ended}")
        _fresh_session()
        flash(_ended_message(ended), "error")
        return redirect(login_url(login_manager.login_view, request.url))
    if session_limits.is_activity():
        sessions.note_activity(db.get_db(), current_user.get_id(), now=now())
    return _auditor_refusal() or _second_factor_missing()


def _auditor_refusal():
    """An auditor's request that would change something: 403, whatever the page offered."""
    g.operator_role = roles.role_of(db.get_db(), current_user.id)
    if g.operator_role != roles.AUDITOR or roles.auditor_may(request.method, request.endpoint):
        return None
    audit.record("refused", request.path, ok=False, detail=f"read-only auditor: {request.method}")
    message = _("You are an auditor: you can see everything here, and change nothing.")
    return render_template("error.html", kind="forbidden", reason=message), 403


# What an operator without a second factor may still open when the console requires one.
ENROLMENT = frozenset({"second_factor.page", "second_factor.enrol", "second_factor.confirm"})


def _second_factor_missing():
    """With REQUIRE_SECOND_FACTOR, an operator who has none is sent to enrol one first."""
    if not current_app.config.get("REQUIRE_SECOND_FACTOR", False):
        return None
    if request.endpoint in ENROLMENT:
        return None
    if second_factor_store.is_enrolled(db.get_db(), current_user.id):
        return None
    flash(_("This console requires a second factor: set one up to go on."), "warning")
    return redirect(url_for("second_factor.page"))


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    with app.app_context(), db.connect(app.config["DATABASE"]) as connection:
        operators.ensure_first_operator(connection, Path(app.config["FIRST_OPERATOR_FILE"]))

    @app.context_processor
    def _logout_form():
        return {"logout_form": LogoutForm(), "read_only": g.get("operator_role") == roles.AUDITOR}


def safe_next(target: str | None) -> str:
    # Only a path on this console, never an absolute URL elsewhere (open redirect).
    if target and target.startswith("/") and not target.startswith("//"):
        if not urlsplit(target).netloc and "\\" not in target:
            return target
    return url_for("health.page")


def client_address() -> str:
    """Who is asking, for the lockout (behind nginx, see TRUSTED_PROXIES in create_app)."""
    return lockout.client_key(request.remote_addr)


def locked_message(seconds: int) -> str:
    minutes = max(1, (seconds + 59) // 60)
    return _(
        "Too many wrong passwords: this account is locked for %(minutes)d more minute(s). "
        "Try again later, or ask another operator.",
        minutes=minutes,
    )


def _ended_message(reason: str) -> str:
    if reason == "idle":
        return _(
            "You were logged out after %(minutes)d minutes without activity.",
            minutes=current_app.config["SESSION_TIMEOUT_MINUTES"],
        )
    return _(
        "You were logged out: a login lasts %(hours)d hours at most.",
        hours=session_limits.ABSOLUTE_LIFETIME_HOURS,
    )


def _fresh_session() -> None:
    """End the login on the server, forget the session, keep only the language chosen."""
    if current_user.is_authenticated:
        sessions.end(db.get_db(), current_user.get_id())
    language = session.get("lang")
    logout_user()
    session.clear()
    if language:
        session["lang"] = language


def _first_operator_file() -> Path:
    return Path(current_app.config["FIRST_OPERATOR_FILE"])


def _login_page(form: LoginForm, status: int = 200):
    # The hint about the generated password only while it exists (see operators.store).
    generated = _first_operator_file()
    return render_template(
        "login.html",
        form=form,
        first_operator=operators.FIRST_OPERATOR,
        first_operator_file=generated if generated.exists() else None,
    ), status


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("health.page"))
    form = LoginForm()
    if not form.validate_on_submit():
        return _login_page(form)
    connection, username = db.get_db(), form.username.data
    try:
        operator = lockout.guarded(
            connection,
            username=username,
            client=client_address(),
            verify=lambda: operators.authenticate(connection, username, form.password.data),
            now=now(),
        )
    except lockout.Locked as locked:
        audit.record("login", username, ok=False, detail="locked", operator=username)
        flash(locked_message(locked.seconds), "error")
        return _login_page(form, 429)
    if operator is None:
        audit.record("login", username, ok=False, detail="wrong password", operator=username)
        locked_for = lockout.seconds_locked(connection, username, client_address(), now())
        flash(
            locked_message(locked_for) if locked_for else _("Wrong username or password."), "error"
        )
        return _login_page(form, 429 if locked_for else 401)
    _fresh_session()
    if second_factor_store.is_enrolled(connection, operator.id):
        audit.record(
            "login",
            username,
            ok=True,
            detail="password right; second factor asked",
            operator=username,
        )
        from admin_console.second_factor.views import ask_after_password

        return ask_after_password(operator, request.args.get("next"))
    log_in(connection, operator)
    audit.record("login", username, ok=True)
    if operators.first_operator_file_names(_first_operator_file(), username):
        flash(
            _(
                "Choose your own password now (My password): the generated one is kept in "
                "plain text on the server until you do."
            ),
            "warning",
        )
    return redirect(safe_next(request.args.get("next")))


def log_in(connection, operator: operators.Operator) -> None:
    """Record a new login and give its token to the browser."""
    moment = now()
    sessions.forget_older_than(connection, moment - session_limits.ABSOLUTE_LIFETIME_HOURS * 3600)
    login_user(
        sessions.start(connection, operator_id=operator.id, username=operator.username, now=moment)
    )
    session.permanent = True  # the cookie outlives the browser, up to the absolute lifetime


@bp.post("/logout")
def logout():
    # CSRFProtect has already refused a POST without a valid token.
    if current_user.is_authenticated:
        audit.record("logout", current_user.username, ok=True)
    _fresh_session()
    return redirect(url_for("auth.login"))
