"""The user pages: list (server-side search, filters, pages), one user, and the actions."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from admin_console import audit
from admin_console.actions import Refused, ask_first, confirmation_page, perform
from admin_console.auth import require_login
from admin_console.externals import is_external
from admin_console.forms import ActionForm, ConfirmForm
from admin_console.pagination import offset_arg
from admin_console.synapse_admin import EndpointMissing, appliance, client, rooms, users
from admin_console.users import invitation
from admin_console.users.forms import DeactivateForm, InviteForm, ReactivateForm
from admin_console.users.listing import FILTERS, list_page

bp = Blueprint("users", __name__, url_prefix="/users")
bp.before_request(require_login)
PAGE_SIZE = 50
ROOM_NAMES_SHOWN = 25


@bp.get("/")
def page():
    kind = request.args.get("kind", "active")
    search = request.args.get("q", "").strip()
    listing = list_page(client(), kind, search, offset_arg(), PAGE_SIZE)
    return render_template(
        "users/list.html", listing=listing, kind=kind, q=search, filters=FILTERS,
        page_size=PAGE_SIZE, is_external=is_external,
    )


def _allowlist_or_none():
    try:
        return appliance.allowlist(client())
    except EndpointMissing:
        return None


def _room_names(room_ids: list[str]) -> dict[str, str | None]:
    synapse = client()
    shown = room_ids[:ROOM_NAMES_SHOWN]
    with ThreadPoolExecutor(max_workers=4) as pool:
        found = pool.map(lambda room_id: rooms.get_room(synapse, room_id).name, shown)
        return dict(zip(shown, found))


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
        external=is_external(details.user.displayname, details.emails, _allowlist_or_none()),
        action_form=ActionForm(),
        deactivate_form=DeactivateForm(),
        reactivate_form=ReactivateForm(),
    )


def _back(user_id: str):
    return redirect(url_for("users.detail", user_id=user_id))


@bp.post("/<path:user_id>/deactivate")
def deactivate(user_id: str):
    form = DeactivateForm()
    if not form.is_confirmed:
        return confirmation_page(
            form,
            _("Deactivate %(user)s?", user=user_id),
            _("The account can no longer log in, leaves every room and loses its email "
              "addresses. With erase, its profile is removed too. This cannot be undone "
              "except by reactivating with a new password."),
            _("Deactivate"),
        )
    erase = form.erase.data
    perform(
        "user.deactivate" + (".erase" if erase else ""), user_id,
        lambda: users.deactivate(client(), user_id, erase=erase),
        _("%(user)s is deactivated.", user=user_id),
    )
    return _back(user_id)


@bp.post("/<path:user_id>/reactivate")
def reactivate(user_id: str):
    form = ReactivateForm()
    if not form.validate_on_submit():
        for errors in form.errors.values():
            flash(_("Not reactivated: %(reason)s", reason="; ".join(map(str, errors))), "error")
        return _back(user_id)
    perform(
        "user.reactivate", user_id,
        lambda: users.reactivate(client(), user_id, form.password.data, form.email.data),
        _("%(user)s is active again; give them the new password.", user=user_id),
    )
    return _back(user_id)


@bp.post("/<path:user_id>/admin/<any(grant,revoke):change>")
def set_admin(user_id: str, change: str):
    grant = change == "grant"
    asking = ask_first(
        ConfirmForm(), grant, _("Make %(user)s a server admin?", user=user_id),
        _("A server admin can read and change every account and room through the Admin API."),
        _("Make server admin"),
    )
    if asking:
        return asking
    perform(
        f"user.admin.{change}", user_id, lambda: users.set_admin(client(), user_id, grant),
        _("%(user)s is now a server admin.", user=user_id) if grant
        else _("%(user)s is no longer a server admin.", user=user_id),
    )
    return _back(user_id)


@bp.post("/<path:user_id>/logout")
def log_out(user_id: str):
    asking = ask_first(
        ConfirmForm(), True, _("Log %(user)s out of every session?", user=user_id),
        _("Every device is removed; the user must log in again on each, and loses access to "
          "encrypted history unless they kept a key backup."),
        _("Log out everywhere"),
    )
    if asking:
        return asking
    perform(
        "user.logout_all", user_id,
        lambda: _("%(count)d session(s) ended", count=users.log_out_everywhere(client(), user_id)),
        _("%(user)s is logged out of every session.", user=user_id),
    )
    return _back(user_id)


@bp.post("/<path:user_id>/<any(suspend,unsuspend):change>")
def suspend(user_id: str, change: str):
    on = change == "suspend"
    asking = ask_first(
        ConfirmForm(), on, _("Suspend %(user)s?", user=user_id),
        _("A suspended user can still log in and read, but cannot send, join, invite or "
          "change their profile until unsuspended."),
        _("Suspend"),
    )
    if asking:
        return asking
    perform(
        f"user.{change}", user_id, lambda: users.set_suspended(client(), user_id, on),
        _("%(user)s is suspended.", user=user_id) if on
        else _("%(user)s is no longer suspended.", user=user_id),
    )
    return _back(user_id)


@bp.post("/<path:user_id>/<any(shadowban,unshadowban):change>")
def shadow_ban(user_id: str, change: str):
    on = change == "shadowban"
    asking = ask_first(
        ConfirmForm(), on, _("Shadow-ban %(user)s?", user=user_id),
        _("The user's messages and invitations silently reach nobody; they are not told."),
        _("Shadow-ban"),
    )
    if asking:
        return asking
    perform(
        f"user.{change}", user_id,
        lambda: users.set_shadow_banned(client(), user_id, on),
        _("%(user)s is shadow-banned.", user=user_id) if on
        else _("%(user)s is no longer shadow-banned.", user=user_id),
    )
    return _back(user_id)


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

    perform("user.password_reset_mail", user_id, send,
            _("Synapse sent its password-reset link to the user's address."))
    return _back(user_id)


@bp.route("/invite", methods=["GET", "POST"])
def invite():
    form = InviteForm()
    outcomes: list[invitation.Outcome] = []
    if form.validate_on_submit():
        allowlist = appliance.allowlist(client())
        for address in invitation.parse_addresses(form.emails.data):
            outcome = invitation.invite(address, allowlist)
            audit.record("user.invite", outcome.address, outcome.sent, outcome.reason)
            outcomes.append(outcome)
    return render_template("users/invite.html", form=form, outcomes=outcomes)
