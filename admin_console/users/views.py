# SPDX-License-Identifier: AGPL-3.0-or-later
"""The user pages: list (server-side search, filters, pages), one user, and the actions."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import LazyString
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from admin_console import audit
from admin_console.actions import Confirmation, Refused, confirm_then_perform, perform, toggle
from admin_console.auth import require_login
from admin_console.csv_export import csv_lines
from admin_console.externals import DomainCheck, is_external
from admin_console.forms import ActionForm, ConfirmForm
from admin_console.pagination import this_page_url
from admin_console.synapse_admin import (
    SynapseClient,
    appliance,
    client,
    rooms,
    users,
)
from admin_console.users import export as user_csv
from admin_console.users import invitation
from admin_console.users.forms import DeactivateForm, InviteForm, ReactivateForm
from admin_console.users.listing import CURSOR_ARG, FILTERS, cursor_arg, list_page
from appliance.addresses.email_address import parse_email

bp = Blueprint("users", __name__, url_prefix="/users")
bp.before_request(require_login)
PAGE_SIZE = 50
ROOM_NAMES_SHOWN = 25


@bp.get("/")
def page():
    kind = request.args.get("kind", "active")
    search = request.args.get("q", "").strip()
    listing = list_page(client(), kind=kind, search=search, cursor=cursor_arg(), limit=PAGE_SIZE)
    return render_template(
        "users/list.html",
        listing=listing,
        kind=kind,
        q=search,
        filters=FILTERS,
        next_url=_page_url(listing.next_cursor),
        prev_url=_page_url(listing.prev_cursor),
    )


@bp.get("/export.csv")
def export():
    """Every user of this filter and search, as CSV; who exported what is in the audit log."""
    kind = request.args.get("kind", "active")
    kind = kind if kind in FILTERS else "active"
    search = request.args.get("q", "").strip()
    synapse = client()
    # The first page before answering: Synapse down gives the error page, not a broken file.
    first = list_page(synapse, kind=kind, search=search, cursor=None, limit=user_csv.PAGE_SIZE)
    audit.record("user.export", f"kind={kind} q={search}", ok=True)
    listed = user_csv.all_pages(synapse, kind=kind, search=search, first=first)
    return Response(
        csv_lines(user_csv.COLUMNS, (user_csv.cells(user) for user in listed)),
        mimetype="text/csv",
        headers={"Content-Disposition": "attachment; filename=users.csv"},
    )


def _page_url(cursor: str | None) -> str | None:
    return this_page_url(**{CURSOR_ARG: cursor}) if cursor else None


def _domain_check(synapse: SynapseClient) -> DomainCheck:
    return lambda address: appliance.email_domain_allowed(synapse, address)


def _room_names(room_ids: list[str]) -> dict[str, str | None]:
    synapse = client()
    shown = room_ids[:ROOM_NAMES_SHOWN]
    with ThreadPoolExecutor(max_workers=4) as pool:
        found = pool.map(lambda room_id: rooms.get_room(synapse, room_id).name, shown)
        return dict(zip(shown, found, strict=True))


@bp.get("/<path:user_id>")
def detail(user_id: str):
    synapse = client()
    details = users.get_user(synapse, user_id)
    room_ids = users.joined_rooms(synapse, user_id)
    return render_template(
        "users/detail.html",
        details=details,
        user=details.user,
        devices=users.devices(synapse, user_id),
        room_ids=room_ids,
        room_names=_room_names(room_ids),
        external=is_external(synapse, user_id),
        action_form=ActionForm(),
        deactivate_form=DeactivateForm(),
        reactivate_form=ReactivateForm(),
    )


def _detail_url(user_id: str) -> str:
    return url_for("users.detail", user_id=user_id)


@bp.post("/<path:user_id>/deactivate")
def deactivate(user_id: str):
    form = DeactivateForm()
    erase = form.erase.data
    return confirm_then_perform(
        form,
        ask=Confirmation(
            _("Deactivate %(user)s?", user=user_id),
            _(
                "The account can no longer log in, leaves every room and loses its email "
                "addresses. With erase, its profile is removed too. This cannot be undone "
                "except by reactivating with a new password."
            ),
            _("Deactivate"),
        ),
        back=_detail_url(user_id),
        action="user.deactivate" + (".erase" if erase else ""),
        target=user_id,
        operation=lambda: users.deactivate(client(), user_id, erase=erase),
        success=_("%(user)s is deactivated.", user=user_id),
    )


@bp.post("/<path:user_id>/reactivate")
def reactivate(user_id: str):
    form = ReactivateForm()
    if not form.validate_on_submit():
        for errors in form.errors.values():
            flash(_("Not reactivated: %(reason)s", reason="; ".join(map(str, errors))), "error")
        return redirect(_detail_url(user_id))
    # Bound as the registration would store it: the normalised form, never the raw text.
    email = parse_email(form.email.data).address if form.email.data else None
    perform(
        action="user.reactivate",
        target=user_id,
        operation=lambda: users.reactivate(
            client(), user_id, password=form.password.data, email=email
        ),
        success=_("%(user)s is active again; give them the new password.", user=user_id),
    )
    return redirect(_detail_url(user_id))


@dataclass(frozen=True)
class Switch:
    """One of a user's on/off states: the Admin API call, and the texts, "%(user)s" filled in."""

    call: Callable[[SynapseClient, str, bool], None]
    question: LazyString  # asked before switching on
    consequence: LazyString
    button: LazyString
    done_on: LazyString
    done_off: LazyString


# Lazy texts: each request gets them in its operator's language.
SWITCHES = {
    "admin": Switch(
        users.set_admin,
        _l("Make %(user)s a server admin?"),
        _l("A server admin can read and change every account and room through the Admin API."),
        _l("Make server admin"),
        _l("%(user)s is now a server admin."),
        _l("%(user)s is no longer a server admin."),
    ),
    "suspend": Switch(
        users.set_suspended,
        _l("Suspend %(user)s?"),
        _l(
            "A suspended user can still log in and read, but cannot send, join, invite or "
            "change their profile until unsuspended."
        ),
        _l("Suspend"),
        _l("%(user)s is suspended."),
        _l("%(user)s is no longer suspended."),
    ),
    "shadowban": Switch(
        users.set_shadow_banned,
        _l("Shadow-ban %(user)s?"),
        _l("The user's messages and invitations silently reach nobody; they are not told."),
        _l("Shadow-ban"),
        _l("%(user)s is shadow-banned."),
        _l("%(user)s is no longer shadow-banned."),
    ),
}


def _switch(name: str, user_id: str, on: bool, action: str):
    switch, user = SWITCHES[name], {"user": user_id}
    return toggle(
        action=action,
        target=user_id,
        on=on,
        switch=lambda state: switch.call(client(), user_id, state),
        ask=Confirmation(str(switch.question) % user, str(switch.consequence), str(switch.button)),
        success=str(switch.done_on if on else switch.done_off) % user,
        back=_detail_url(user_id),
    )


@bp.post("/<path:user_id>/admin/<any(grant,revoke):change>")
def set_admin(user_id: str, change: str):
    return _switch("admin", user_id, change == "grant", f"user.admin.{change}")


@bp.post("/<path:user_id>/<any(suspend,unsuspend):change>")
def suspend(user_id: str, change: str):
    return _switch("suspend", user_id, change == "suspend", f"user.{change}")


@bp.post("/<path:user_id>/<any(shadowban,unshadowban):change>")
def shadow_ban(user_id: str, change: str):
    return _switch("shadowban", user_id, change == "shadowban", f"user.{change}")


@bp.post("/<path:user_id>/logout")
def log_out(user_id: str):
    return confirm_then_perform(
        ConfirmForm(),
        ask=Confirmation(
            _("Log %(user)s out of every session?", user=user_id),
            _(
                "Every device is removed; the user must log in again on each, and loses access "
                "to encrypted history unless they kept a key backup."
            ),
            _("Log out everywhere"),
        ),
        back=_detail_url(user_id),
        action="user.logout_all",
        target=user_id,
        operation=lambda: _(
            "%(count)d session(s) ended", count=users.log_out_everywhere(client(), user_id)
        ),
        success=_("%(user)s is logged out of every session.", user=user_id),
    )


@bp.post("/<path:user_id>/password-reset")
def password_reset(user_id: str):
    if not ActionForm().validate_on_submit():
        abort(400)

    def send() -> str:
        emails = users.get_user(client(), user_id).emails
        if not emails:
            raise Refused(_("this account has no email address to send the link to"))
        users.send_password_reset(client(), emails[0])
        return emails[0]

    perform(
        action="user.password_reset_mail",
        target=user_id,
        operation=send,
        success=_("Synapse sent its password-reset link to the user's address."),
    )
    return redirect(_detail_url(user_id))


@bp.route("/invite", methods=["GET", "POST"])
def invite():
    form = InviteForm()
    outcomes: list[invitation.Outcome] = []
    if form.validate_on_submit():
        domain_allowed = _domain_check(client())
        for address in invitation.parse_addresses(form.emails.data):
            outcome = invitation.invite(address, domain_allowed)
            audit.record("user.invite", outcome.address, ok=outcome.sent, detail=outcome.reason)
            outcomes.append(outcome)
    return render_template("users/invite.html", form=form, outcomes=outcomes)
