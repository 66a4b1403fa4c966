# SPDX-License-Identifier: AGPL-3.0-or-later
"""The retention page: the policy in force, and two audited actions on old media."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, url_for
from flask_babel import gettext as _

from admin_console import clock
from admin_console.actions import Confirmation, confirm_then_perform
from admin_console.auth import require_login
from admin_console.retention.forms import PurgeForm
from admin_console.synapse_admin import client, retention

bp = Blueprint("retention", __name__, url_prefix="/retention")
bp.before_request(require_login)


@bp.get("/")
def page():
    return render_template(
        "retention/page.html", policy=current_app.config.get("RETENTION"), form=PurgeForm()
    )


def _texts(action: str, days: int) -> tuple[Confirmation, str]:
    return {
        "purge_remote": (
            Confirmation(
                _("Delete the copies of other servers' files unused for %(days)d days?", days=days),
                _("They are downloaded again from their server if somebody asks for them."),
                _("Delete"),
            ),
            _("Cached remote files unused for %(days)d days are deleted.", days=days),
        ),
        "delete_local": (
            Confirmation(
                _("Delete the files uploaded here and unused for %(days)d days?", days=days),
                _(
                    "Messages that show them will show nothing. Profile pictures are kept. "
                    "This cannot be undone."
                ),
                _("Delete"),
            ),
            _("Files uploaded here and unused for %(days)d days are deleted.", days=days),
        ),
    }[action]


@bp.post("/<any(purge_remote,delete_local):action>")
def act(action: str):
    form = PurgeForm()
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for error in errors:
                flash(str(error), "error")
        return redirect(url_for("retention.page"))
    days = int(form.days.data)
    before_ms = int((clock.now() - days * 86400) * 1000)
    synapse, server_name = client(), current_app.config["SERVER_NAME_MATRIX"]

    def run() -> str:
        if action == "purge_remote":
            count = retention.purge_remote_cache(synapse, before_ms)
        else:
            count = retention.delete_local_media(synapse, server_name, before_ms)
        flash(_("Files deleted: %(count)d.", count=count), "info")
        return f"{count} files deleted (unused for {days} days)"

    ask, success = _texts(action, days)
    return confirm_then_perform(
        form,
        ask=ask,
        back=url_for("retention.page"),
        action=f"retention.{action}",
        target=f"media unused for {days} days",
        operation=run,
        success=success,
    )
