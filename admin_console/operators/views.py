"""The operators page: who can log in to the console; add and remove."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user

from admin_console import audit, db
from admin_console.actions import Refused, confirmation_page, perform
from admin_console.auth import require_login
from admin_console.forms import ConfirmForm
from admin_console.operators import store
from admin_console.operators.forms import AddOperatorForm

bp = Blueprint("operators", __name__, url_prefix="/operators")
bp.before_request(require_login)


@bp.get("/")
def page():
    return _render(AddOperatorForm())


def _render(form: AddOperatorForm):
    return render_template(
        "operators/list.html", operators=store.list_all(db.get_db()), form=form,
        remove_form=ConfirmForm(),
    )


@bp.post("/")
def add():
    form = AddOperatorForm()
    if not form.validate_on_submit():
        return _render(form), 400
    username = form.username.data
    if store.exists(db.get_db(), username):
        audit.record("operator.add", username, False, "exists")
        flash(_("An operator named %(name)s already exists.", name=username), "error")
        return _render(form), 400
    store.create(db.get_db(), username, form.password.data)
    audit.record("operator.add", username, True)
    flash(_("%(name)s can now log in.", name=username), "success")
    return redirect(url_for("operators.page"))


@bp.post("/<int:operator_id>/remove")
def remove(operator_id: int):
    operator = store.by_id(db.get_db(), str(operator_id))
    if operator is None:
        abort(404)
    form = ConfirmForm()
    if not form.is_confirmed:
        return confirmation_page(
            form, _("Remove the operator %(name)s?", name=operator.username),
            _("They can no longer log in to the console."), _("Remove"),
        )

    def run() -> None:
        if operator.id == current_user.id:
            raise Refused(_("you cannot remove yourself; ask another operator"))
        try:
            store.remove(db.get_db(), operator.id)
        except store.LastOperator:
            raise Refused(_("the last operator cannot be removed")) from None

    perform("operator.remove", operator.username, run,
            _("%(name)s can no longer log in.", name=operator.username))
    return redirect(url_for("operators.page"))
