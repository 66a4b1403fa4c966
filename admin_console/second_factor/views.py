# SPDX-License-Identifier: AGPL-3.0-or-later
"""The second factor: an operator enrols (or removes) it under "Second factor", and a login
whose password was right asks for it before the login exists.

Between the two steps of a login, only the operator's id and the moment the password was right
are kept, in Flask's signed session cookie; no login record exists yet, so a stolen password
alone opens nothing. Wrong codes are counted by the lockout under their own name
("<username>#2fa"): a right password does not clear them, so the password cannot be used to
get fresh guesses at the code.
"""

from __future__ import annotations

import segno
from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user

from admin_console import audit, db, lockout, operators
from admin_console.auth import (
    client_address,
    locked_message,
    log_in,
    require_login,
    safe_next,
)
from admin_console.clock import now
from admin_console.second_factor import store
from admin_console.second_factor.forms import CodeForm, StartForm

bp = Blueprint("second_factor", __name__)
PENDING = "second_factor_pending"
# How long after a right password the code may be given.
PENDING_SECONDS = 300
# Below this many recovery codes left, the operator is told to make new ones.
FEW_CODES = 3


def lockout_name(username: str) -> str:
    return f"{username}#2fa"


def ask_after_password(operator: operators.Operator, next_page: str | None):
    """The password was right and the operator has a second factor: ask for it."""
    session[PENDING] = {"operator_id": operator.id, "at": now(), "next": next_page or ""}
    return redirect(url_for("second_factor.verify"))


def _pending() -> operators.Operator | None:
    pending = session.get(PENDING)
    if not isinstance(pending, dict) or now() - pending.get("at", 0) > PENDING_SECONDS:
        session.pop(PENDING, None)
        return None
    return operators.by_id(db.get_db(), str(pending.get("operator_id")))


@bp.route("/login/second-factor", methods=["GET", "POST"])
def verify():
    operator = _pending()
    if operator is None:
        flash(_("Log in again: the code was not given in time."), "error")
        return redirect(url_for("auth.login"))
    form = CodeForm()
    if not form.validate_on_submit():
        return render_template("second_factor/verify.html", form=form), (
            400 if request.method == "POST" else 200
        )
    connection, code = db.get_db(), form.code.data
    used: list[str] = []

    def check() -> bool | None:
        if store.check_code(connection, operator.id, code):
            used.append("authenticator code")
        elif store.use_recovery_code(connection, operator.id, code):
            used.append("recovery code")
        return True if used else None

    try:
        right = lockout.guarded(
            connection,
            username=lockout_name(operator.username),
            client=client_address(),
            verify=check,
            now=now(),
        )
    except lockout.Locked as locked:
        audit.record(
            "login",
            operator.username,
            ok=False,
            detail="second factor: locked",
            operator=operator.username,
        )
        flash(locked_message(locked.seconds), "error")
        return render_template("second_factor/verify.html", form=form), 429
    if right is None:
        audit.record(
            "login",
            operator.username,
            ok=False,
            detail="second factor: wrong code",
            operator=operator.username,
        )
        form.code.errors.append(_("This code is not right, or was already used."))
        return render_template("second_factor/verify.html", form=form), 401
    next_page = session.pop(PENDING, {}).get("next")
    log_in(connection, operator)
    audit.record("login", operator.username, ok=True, detail=f"second factor: {used[0]}")
    left = store.recovery_codes_left(connection, operator.id)
    if left < FEW_CODES:
        flash(
            _(
                "Only %(count)d recovery code(s) left: make new ones under Second factor.",
                count=left,
            ),
            "warning",
        )
    return redirect(safe_next(next_page))


# --- the operator's own second factor ----------------------------------------------------------


@bp.get("/account/second-factor")
def page():
    if (refused := require_login()) is not None:
        return refused
    return _page()


def _page(status: int = 200):
    connection = db.get_db()
    return render_template(
        "second_factor/page.html",
        enrolled=store.is_enrolled(connection, current_user.id),
        codes_left=store.recovery_codes_left(connection, current_user.id),
        required=current_app.config.get("REQUIRE_SECOND_FACTOR", False),
        start_form=StartForm(),
        remove_form=CodeForm(formdata=None),
    ), status


@bp.post("/account/second-factor/enrol")
def enrol():
    """A new secret (replacing any other, once confirmed): the QR code and a first code."""
    if (refused := require_login()) is not None:
        return refused
    if not StartForm().validate_on_submit():
        return redirect(url_for("second_factor.page"))
    secret = store.begin(db.get_db(), current_user.id)
    return _enrol_page(secret, CodeForm(formdata=None))


def _enrol_page(secret: str, form: CodeForm, status: int = 200):
    uri = store.provisioning_uri(secret, current_user.username)
    return render_template(
        "second_factor/enrol.html",
        qr_svg=segno.make(uri, error="m").svg_inline(scale=5, title=_("QR code to scan")),
        secret=" ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
        form=form,
    ), status


@bp.post("/account/second-factor/confirm")
def confirm():
    if (refused := require_login()) is not None:
        return refused
    connection, form = db.get_db(), CodeForm()
    pending = store.enrolment(connection, current_user.id)
    if pending is None:
        return redirect(url_for("second_factor.page"))
    if not form.validate_on_submit() or not store.check_code(
        connection, current_user.id, form.code.data
    ):
        audit.record("second_factor.enrol", current_user.username, ok=False, detail="wrong code")
        form.code.errors.append(_("This code is not right: check the app's clock and try again."))
        return _enrol_page(pending.secret, form, 400)
    codes = store.confirm(connection, current_user.id)
    audit.record("second_factor.enrol", current_user.username, ok=True)
    return render_template("second_factor/codes.html", codes=codes)


@bp.post("/account/second-factor/remove")
def remove():
    if (refused := require_login()) is not None:
        return refused
    connection, form = db.get_db(), CodeForm()
    if current_app.config.get("REQUIRE_SECOND_FACTOR", False):
        flash(_("This console requires a second factor: it cannot be removed."), "error")
        return _page(403)
    code = form.code.data if form.validate_on_submit() else ""
    if not (
        store.check_code(connection, current_user.id, code)
        or store.use_recovery_code(connection, current_user.id, code)
    ):
        audit.record("second_factor.remove", current_user.username, ok=False, detail="wrong code")
        flash(_("This code is not right, or was already used."), "error")
        return _page(400)
    store.remove(connection, current_user.id)
    audit.record("second_factor.remove", current_user.username, ok=True)
    flash(_("Your second factor is removed: your password alone now logs you in."), "success")
    return redirect(url_for("second_factor.page"))
