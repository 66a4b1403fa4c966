# SPDX-License-Identifier: AGPL-3.0-or-later
"""The reports page and the actions on one report, each confirmed and audited.

The sender to suspend or deactivate and the event to redact are read from the report on
Synapse, never from the form: the operator chooses a report, not a user.
"""

from __future__ import annotations

from dataclasses import replace

from flask import Blueprint, current_app, redirect, render_template, url_for
from flask_babel import gettext as _

from admin_console.actions import Confirmation, Refused, confirm_then_perform
from admin_console.auth import require_login
from admin_console.forms import ConfirmForm
from admin_console.pagination import offset_arg
from admin_console.synapse_admin import SynapseRefused, SynapseUnavailable, client, reports, users

bp = Blueprint("reports", __name__, url_prefix="/reports")
bp.before_request(require_login)
PAGE_SIZE = 20
REDACTION_REASON = "Removed by the server's operators after a report"
# The health page must stay quick when Synapse hangs: its own probes have their timeouts.
COUNT_TIMEOUT_SECONDS = 3.0


@bp.app_template_global()
def open_report_count() -> int | None:
    """How many reports wait for an answer (Synapse keeps a report until it is dismissed);
    None when Synapse cannot be asked (the health page says so instead of failing)."""
    try:
        return reports.open_count(replace(client(), timeout=COUNT_TIMEOUT_SECONDS))
    except (SynapseRefused, SynapseUnavailable):
        return None


@bp.get("/")
def page():
    synapse, offset = client(), offset_arg()
    listed = reports.list_reports(synapse, offset, PAGE_SIZE)
    rows = [(report, reports.reported_event(synapse, report)) for report in listed.reports]
    return render_template(
        "reports/list.html",
        listed=listed,
        rows=rows,
        offset=offset,
        form=ConfirmForm(),
        page_size=PAGE_SIZE,
    )


def _texts(action: str, report: reports.Report) -> tuple[Confirmation, str]:
    sender = report.sender or _("unknown sender")
    return {
        "redact": (
            Confirmation(
                _("Redact the reported message in %(room)s?", room=report.room_id),
                _(
                    "Its content is removed for everybody in the room and on this server. "
                    "This cannot be undone."
                ),
                _("Redact"),
            ),
            _("The message %(event)s is redacted.", event=report.event_id),
        ),
        "suspend": (
            Confirmation(
                _("Suspend %(user)s?", user=sender),
                _(
                    "A suspended user can still log in and read, but cannot send, join, "
                    "invite or change their profile until unsuspended."
                ),
                _("Suspend"),
            ),
            _("%(user)s is suspended.", user=sender),
        ),
        "deactivate": (
            Confirmation(
                _("Deactivate %(user)s?", user=sender),
                _("The account is logged out everywhere and cannot be used any more."),
                _("Deactivate"),
            ),
            _("%(user)s is deactivated.", user=sender),
        ),
        "dismiss": (
            Confirmation(
                _("Dismiss report %(id)d?", id=report.id),
                _("The report is deleted; the message stays as it is."),
                _("Dismiss"),
            ),
            _("Report %(id)d is dismissed.", id=report.id),
        ),
    }[action]


def _local_sender(report: reports.Report) -> str:
    server_name = current_app.config["SERVER_NAME_MATRIX"]
    if not report.sender or not report.sender.endswith(f":{server_name}"):
        raise Refused(
            _("%(user)s is not a user of this server.", user=report.sender or _("unknown sender"))
        )
    return report.sender


def _operation(action: str, report: reports.Report):
    synapse = client()
    if action == "redact":

        def redact() -> str:
            try:
                who = reports.redact(
                    synapse, report, current_app.config["SERVER_NAME_MATRIX"], REDACTION_REASON
                )
            except reports.CannotRedact as error:
                raise Refused(str(error)) from None
            return f"{report.event_id} in {report.room_id}, redacted as {who}"

        return redact
    if action == "suspend":
        return lambda: users.set_suspended(synapse, _local_sender(report), True)
    if action == "deactivate":
        return lambda: users.deactivate(synapse, _local_sender(report), erase=False)
    return lambda: reports.dismiss(synapse, report.id)


@bp.post("/<int:report_id>/<any(redact,suspend,deactivate,dismiss):action>")
def act(report_id: int, action: str):
    form = ConfirmForm()
    if not form.validate_on_submit():
        return redirect(url_for("reports.page"))
    report = reports.get_report(client(), report_id)
    ask, success = _texts(action, report)
    target = report.event_id if action in ("redact", "dismiss") else (report.sender or "")
    return confirm_then_perform(
        form,
        ask=ask,
        back=url_for("reports.page"),
        action=f"report.{action}",
        target=f"report {report.id}: {target}",
        operation=_operation(action, report),
        success=success,
    )
