# SPDX-License-Identifier: AGPL-3.0-or-later
"""The media page: what the scanner refused, the signatures, and actions on one file."""

from __future__ import annotations

from flask import Blueprint, current_app, redirect, render_template, url_for
from flask_babel import gettext as _

from admin_console.actions import Confirmation, Refused, confirm_then_perform
from admin_console.auth import require_login
from admin_console.media.forms import MediaForm
from admin_console.media.signatures import signature_state, too_old
from admin_console.pagination import offset_arg
from admin_console.synapse_admin import EndpointMissing, appliance, client, media
from appliance.antivirus.signatures import describe_age

bp = Blueprint("media", __name__, url_prefix="/media")
bp.before_request(require_login)
PAGE_SIZE = 50

# The Admin API call behind each action.
ACTIONS = {
    "quarantine": media.quarantine,
    "release": media.release,
    "delete": media.delete,
}


def _texts(action: str, ref: str) -> tuple[Confirmation, str]:
    """The confirmation of the action on ref, and the message once it is done."""
    return {
        "quarantine": (
            Confirmation(
                _("Quarantine %(media)s?", media=ref),
                _("Nobody can download the file from this server until it is released."),
                _("Quarantine"),
            ),
            _("%(media)s is quarantined.", media=ref),
        ),
        "release": (
            Confirmation(
                _("Release %(media)s from quarantine?", media=ref),
                _("Users can download the file again. Only release a file you know is safe."),
                _("Release"),
            ),
            _("%(media)s is released.", media=ref),
        ),
        "delete": (
            Confirmation(
                _("Delete %(media)s?", media=ref),
                _(
                    "The file and its thumbnails are removed from the server. This cannot be "
                    "undone."
                ),
                _("Delete"),
            ),
            _("%(media)s is deleted.", media=ref),
        ),
    }[action]


@bp.get("/")
def page():
    try:
        refused = appliance.list_refused(client(), offset_arg(), PAGE_SIZE)
        missing = None
    except EndpointMissing as error:
        refused, missing = None, error.path
    state = signature_state()
    return render_template(
        "media/list.html",
        refused=refused,
        missing_endpoint=missing,
        state=state,
        too_old=not isinstance(state, str) and too_old(state.age_seconds),
        describe_age=describe_age,
        form=MediaForm(),
        page_size=PAGE_SIZE,
    )


@bp.post("/<any(quarantine,release,delete):action>")
def act(action: str):
    form = MediaForm()
    if not form.validate_on_submit():
        return redirect(url_for("media.page"))
    raw = form.media.data.strip()

    def run() -> None:
        try:
            ref = media.MediaRef.parse(raw, current_app.config["SERVER_NAME_MATRIX"])
        except ValueError as error:
            raise Refused(str(error)) from None
        ACTIONS[action](client(), ref)

    ask, success = _texts(action, raw)
    return confirm_then_perform(
        form,
        ask=ask,
        back=url_for("media.page"),
        action=f"media.{action}",
        target=raw,
        operation=run,
        success=success,
    )
