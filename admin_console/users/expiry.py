# SPDX-License-Identifier: AGPL-3.0-or-later
"""Account validity in the console: each account's expiry (on the user page and the list),
renew and extend (CSRF, audited, decided by the module), and the accounts expiring soon.

Kept apart from the user views: the user page and list only include ``users/expiry_*.html``,
which call the template functions this blueprint provides.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from admin_console.actions import perform
from admin_console.auth import require_login
from admin_console.forms import ActionForm
from admin_console.synapse_admin import client, validity
from admin_console.synapse_admin.validity import Expiry
from admin_console.users.expiry_forms import ExpiringForm, ExtendForm

bp = Blueprint("expiry", __name__, url_prefix="/expiry")
bp.before_request(require_login)
DEFAULT_DAYS = 30


@bp.app_context_processor
def _template_functions() -> dict:
    """account_expiry(user_id) and account_expiries(user_ids) for the user page and list; None
    when validity is off."""

    def account_expiry(user_id: str) -> tuple[Expiry, list] | None:
        return validity.account(client(), user_id)

    def account_expiries(user_ids: list[str]) -> dict[str, Expiry] | None:
        return validity.expiries(client(), user_ids)

    return {
        "account_expiry": account_expiry,
        "account_expiries": account_expiries,
        "expiry_renew_form": ActionForm,
        "expiry_extend_form": ExtendForm,
    }


@bp.get("/")
def page():
    form = ExpiringForm(request.args)
    days = form.days.data if form.validate() and form.days.data else DEFAULT_DAYS
    accounts = validity.expiring_within(client(), days)
    return render_template("users/expiry_list.html", accounts=accounts, form=form, days=days)


def _back(user_id: str) -> str:
    return url_for("users.detail", user_id=user_id)


@bp.post("/<path:user_id>/renew")
def renew(user_id: str):
    if ActionForm().validate_on_submit():
        perform(
            action="user.validity.renew",
            target=user_id,
            operation=lambda: _until(validity.renew(client(), user_id)),
            success=_("%(user)s is renewed for a whole period.", user=user_id),
        )
    else:
        flash(_("Not renewed: the form expired, try again."), "error")
    return redirect(_back(user_id))


@bp.post("/<path:user_id>/extend")
def extend(user_id: str):
    form = ExtendForm()
    if form.validate_on_submit():
        days = form.days.data
        perform(
            action="user.validity.extend",
            target=user_id,
            operation=lambda: f"+{days} d, " + _until(validity.extend(client(), user_id, days)),
            success=_("%(user)s has %(days)d more days.", user=user_id, days=days),
        )
    else:
        for errors in form.errors.values():
            flash(_("Not extended: %(reason)s", reason="; ".join(map(str, errors))), "error")
    return redirect(_back(user_id))


def _until(expiry: Expiry) -> str:
    """The audit entry's detail: the new expiry."""
    return f"until {expiry.expiration_ts} ms"
