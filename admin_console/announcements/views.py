# SPDX-License-Identifier: AGPL-3.0-or-later
"""The announcements page: write, choose the audience, send; then follow the delivery.

The audience is checked here, server-side, before anything is sent: a domain must be a domain
name, a user must exist on this server. Sending is audited at once ("announcement.send"), and
its outcome when the job ends ("announcement.delivered", with the counts).
"""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user

from admin_console import db
from admin_console.actions import Confirmation, Refused, confirmed, perform
from admin_console.announcements import delivery, store
from admin_console.announcements.forms import AnnouncementForm
from admin_console.auth import require_login
from admin_console.synapse_admin import SynapseRefused, client, users
from appliance.addresses.domain_allowlist import InvalidDomainEntry, normalise_domain_entry

bp = Blueprint("announcements", __name__, url_prefix="/announcements")
bp.before_request(require_login)
# The job page reloads itself while the job runs (a meta refresh: the CSP allows no script).
REFRESH_SECONDS = 3


def _target(form: AnnouncementForm) -> str:
    """The domain or user the audience names, checked; raise Refused with the reason."""
    audience = form.audience.data
    if audience == "domain":
        raw = (form.domain.data or "").strip()
        try:
            domain = normalise_domain_entry(raw)
        except InvalidDomainEntry as error:
            raise Refused(str(error)) from None
        if domain.startswith("*."):
            raise Refused(_("Give one domain, not a wildcard: %(domain)s", domain=raw))
        return domain
    if audience == "user":
        user_id = (form.user.data or "").strip()
        server_name = current_app.config["SERVER_NAME_MATRIX"]
        if not user_id.startswith("@") or not user_id.endswith(f":{server_name}"):
            raise Refused(_("%(user)s is not a user of this server.", user=user_id or "—"))
        try:
            users.get_user(client(), user_id)
        except SynapseRefused as error:
            if error.status == 404:
                raise Refused(_("%(user)s does not exist.", user=user_id)) from None
            raise
        return user_id
    return ""


def _describe(audience: str, target: str) -> str:
    return {
        "all": _("every agent"),
        "domain": _("the agents of %(domain)s", domain=target),
        "user": target,
    }[audience]


@bp.get("/")
def page():
    return render_template(
        "announcements/list.html",
        form=AnnouncementForm(),
        announcements=store.recent(db.get_db()),
        describe=_describe,
    )


@bp.post("/")
def send():
    form = AnnouncementForm()
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for error in errors:
                flash(str(error), "error")
        return render_template(
            "announcements/list.html",
            form=form,
            announcements=store.recent(db.get_db()),
            describe=_describe,
        )
    audience = form.audience.data
    if audience == "all":
        asking = confirmed(
            form,
            ask=Confirmation(
                _("Send this announcement to every agent?"),
                _("Every active agent of this server gets it in their announcements room."),
                _("Send"),
            ),
            back=url_for("announcements.page"),
        )
        if asking is not None:
            return asking
    named = {"all": "", "domain": form.domain.data, "user": form.user.data}[audience] or ""

    def start() -> str:
        target = _target(form)
        announcement_id = store.create(
            db.get_db(),
            operator=current_user.username,
            audience=audience,
            target=target,
            text_fr=form.text_fr.data,
            text_en=form.text_en.data,
        )
        delivery.start(store.get(db.get_db(), announcement_id))
        return f"announcement {announcement_id}"

    started = perform(
        action="announcement.send",
        target=f"{audience} {named}".strip(),
        operation=start,
        success=_("The announcement is being sent."),
    )
    if started is None:
        return redirect(url_for("announcements.page"))
    return redirect(url_for("announcements.job", announcement_id=int(started.split()[-1])))


@bp.get("/<int:announcement_id>")
def job(announcement_id: int):
    announcement = store.get(db.get_db(), announcement_id)
    if announcement is None:
        abort(404)
    return render_template(
        "announcements/job.html",
        announcement=announcement,
        describe=_describe,
        refresh=REFRESH_SECONDS,
    )
