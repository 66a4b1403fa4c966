# SPDX-License-Identifier: AGPL-3.0-or-later
"""The operators page: who can log in to the console; add and remove. And one's own password."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from admin_console import audit, db, lockout, sessions
from admin_console.actions import Confirmation, Refused, confirm_then_perform
from admin_console.alerts import store as alert_store
from admin_console.auth import client_address, locked_message, require_login
from admin_console.clock import now
from admin_console.forms import ConfirmForm
from admin_console.operators import roles, store
from admin_console.operators.forms import (
    AddOperatorForm,
    AlertsForm,
    ChangePasswordForm,
    RoleForm,
)
from admin_console.second_factor import store as second_factor

bp = Blueprint("operators", __name__, url_prefix="/operators")
bp.before_request(require_login)


@bp.get("/")
def page():
    return _render(AddOperatorForm())


def _render(form: AddOperatorForm, alerts_form: AlertsForm | None = None):
    connection = db.get_db()
    if alerts_form is None:
        alerts_form = AlertsForm(email=alert_store.subscription(connection, current_user.id))
    everyone = store.list_all(connection)
    return render_template(
        "operators/list.html",
        operators=everyone,
        roles=roles.all_roles(connection),
        with_second_factor={o.id for o in everyone if second_factor.is_enrolled(connection, o.id)},
        alert_addresses=alert_store.subscriptions(connection),
        form=form,
        alerts_form=alerts_form,
        remove_form=ConfirmForm(),
        role_form=RoleForm(formdata=None),
    )


@bp.post("/alerts")
def alerts():
    """The logged-in operator's alert mail: an address opts in, an empty one opts out."""
    form = AlertsForm()
    if not form.validate_on_submit():
        return _render(AddOperatorForm(formdata=None), form), 400
    connection, email = db.get_db(), (form.email.data or "").strip()
    if email:
        alert_store.subscribe(connection, current_user.id, email)
        audit.record("operator.alerts", current_user.username, ok=True, detail=f"on, to {email}")
        flash(_("Alerts will be mailed to %(email)s.", email=email), "success")
    else:
        if alert_store.unsubscribe(connection, current_user.id):
            audit.record("operator.alerts", current_user.username, ok=True, detail="off")
        flash(_("You will get no alert mail."), "success")
    return redirect(url_for("operators.page"))


@bp.post("/")
def add():
    form = AddOperatorForm()
    if not form.validate_on_submit():
        return _render(form), 400
    username = form.username.data
    if store.exists(db.get_db(), username):
        audit.record("operator.add", username, ok=False, detail="exists")
        flash(_("An operator named %(name)s already exists.", name=username), "error")
        return _render(form), 400
    with db.transaction(db.get_db()):
        operator = store.create(db.get_db(), username, form.password.data)
        db.get_db().execute(
            "INSERT INTO operator_roles (operator_id, role) VALUES (?, ?)",
            (operator.id, form.role.data),
        )
    audit.record("operator.add", username, ok=True, detail=f"role: {form.role.data}")
    flash(_("%(name)s can now log in.", name=username), "success")
    return redirect(url_for("operators.page"))


@bp.post("/<int:operator_id>/remove")
def remove(operator_id: int):
    operator = store.by_id(db.get_db(), str(operator_id))
    if operator is None:
        abort(404)

    def run() -> None:
        if operator.id == current_user.id:
            raise Refused(_("you cannot remove yourself; ask another operator"))
        try:
            roles.remove_operator(db.get_db(), operator.id)
        except store.LastOperator:
            raise Refused(_("the last operator cannot be removed")) from None
        except roles.LastAdministrator:
            raise Refused(_("the last administrator cannot be removed")) from None

    return confirm_then_perform(
        ConfirmForm(),
        ask=Confirmation(
            _("Remove the operator %(name)s?", name=operator.username),
            _("They can no longer log in to the console."),
            _("Remove"),
        ),
        back=url_for("operators.page"),
        action="operator.remove",
        target=operator.username,
        operation=run,
        success=_("%(name)s can no longer log in.", name=operator.username),
    )


@bp.post("/<int:operator_id>/role")
def change_role(operator_id: int):
    operator = store.by_id(db.get_db(), str(operator_id))
    if operator is None:
        abort(404)
    form = RoleForm()
    if not form.validate_on_submit():
        flash(_("Choose a role."), "error")
        return _render(AddOperatorForm(formdata=None)), 400
    try:
        roles.set_role(db.get_db(), operator.id, form.role.data)
    except roles.LastAdministrator:
        audit.record("operator.role", operator.username, ok=False, detail="last administrator")
        flash(
            _("The last administrator must stay one: make someone else administrator first."),
            "error",
        )
        return _render(AddOperatorForm(formdata=None)), 409
    audit.record("operator.role", operator.username, ok=True, detail=f"role: {form.role.data}")
    flash(_("%(name)s is now %(role)s.", name=operator.username, role=form.role.data), "success")
    return redirect(url_for("operators.page"))


@bp.post("/<int:operator_id>/second-factor/reset")
def reset_second_factor(operator_id: int):
    """An operator who lost their phone and their recovery codes: their password alone logs them
    in again (and, if the console requires a second factor, they must set up a new one)."""
    operator = store.by_id(db.get_db(), str(operator_id))
    if operator is None:
        abort(404)

    def run() -> None:
        if operator.id == current_user.id:
            raise Refused(_("use your own Second factor page"))
        second_factor.remove(db.get_db(), operator.id)

    return confirm_then_perform(
        ConfirmForm(),
        ask=Confirmation(
            _("Reset the second factor of %(name)s?", name=operator.username),
            _("Their password alone will log them in until they set up a new one."),
            _("Reset"),
        ),
        back=url_for("operators.page"),
        action="operator.second_factor.reset",
        target=operator.username,
        operation=run,
        success=_("The second factor of %(name)s is reset.", name=operator.username),
    )


@bp.route("/password", methods=["GET", "POST"])
def change_password():
    """The logged-in operator's own password: the current one first, counted by the lockout."""
    form = ChangePasswordForm()
    if not form.validate_on_submit():
        return _password_page(form, 400 if request.method == "POST" else 200)
    connection, name = db.get_db(), current_user.username
    try:
        right = lockout.guarded(
            connection,
            username=name,
            client=client_address(),
            verify=lambda: store.authenticate(connection, name, form.current.data),
            now=now(),
        )
    except lockout.Locked as locked:
        audit.record("operator.password", name, ok=False, detail="locked")
        flash(locked_message(locked.seconds), "error")
        return _password_page(form, 429)
    if right is None:
        audit.record("operator.password", name, ok=False, detail="wrong current password")
        form.current.errors.append(_("this is not your current password"))
        return _password_page(form, 400)
    # Whoever had the old password may be logged in elsewhere: only this login stays, and the
    # new password never exists alongside the other logins.
    with db.transaction(connection):
        store.set_password(connection, current_user.id, form.password.data)
        ended = sessions.end_all(
            connection, operator_id=current_user.id, keep=current_user.get_id()
        )
    details = [f"ended {ended} other login(s)", _retire_generated_password(name)]
    audit.record("operator.password", name, ok=True, detail="; ".join(filter(None, details)))
    flash(_("Your password is changed."), "success")
    return redirect(url_for("operators.page"))


def _password_page(form: ChangePasswordForm, status: int):
    return render_template("operators/password.html", form=form), status


def _retire_generated_password(name: str) -> str:
    """Delete the first operator's generated credentials once they are stale; the audit detail."""
    generated = Path(current_app.config["FIRST_OPERATOR_FILE"])
    try:
        if store.retire_first_operator_file(generated, name):
            return f"deleted {generated}"
    except OSError as error:
        flash(
            _(
                "The file %(file)s, with your previous password, could not be deleted: "
                "%(error)s. Delete it by hand.",
                file=str(generated),
                error=error.strerror,
            ),
            "error",
        )
        return f"could not delete {generated}: {error.strerror}"
    return ""
