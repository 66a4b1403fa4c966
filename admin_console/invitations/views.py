# SPDX-License-Identifier: AGPL-3.0-or-later
"""The invitations page: email invitations newest first, by the module's cursor; revoking one.

A revoked invitation no longer lets its address register; the room's pending invitation is
withdrawn too, as someone left in the room who may invite (the module says if nobody can).
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from admin_console.actions import Confirmation, confirmed, perform
from admin_console.auth import require_login
from admin_console.forms import ConfirmForm
from admin_console.pagination import this_page_url
from admin_console.synapse_admin import EndpointMissing, SynapseRefused, client, invitations
from admin_console.users.listing import CURSOR_ARG, cursor_arg

bp = Blueprint("invitations", __name__, url_prefix="/invitations", template_folder="templates")
bp.before_request(require_login)
PAGE_SIZE = 50
# What the module's operation returns, kept as the audit entry's detail.
WITHDRAWN, STILL_SHOWN = "withdrawn from the room", "still shown in the room"


@bp.get("/")
def page():
    status = request.args.get("status", "pending")
    status = status if status in invitations.STATUSES else "pending"
    try:
        listing, missing = _listing(status, cursor_arg()), None
    except EndpointMissing as error:
        listing, missing = None, error.path
    next_url = None
    if listing is not None and listing.next_cursor:
        next_url = this_page_url(**{CURSOR_ARG: listing.next_cursor})
    return render_template(
        "invitations/list.html",
        listing=listing,
        missing_endpoint=missing,
        status=status,
        statuses=invitations.STATUSES,
        next_url=next_url,
        paged=cursor_arg() is not None,
        form=ConfirmForm(),
    )


def _listing(status: str, cursor: str | None) -> invitations.InvitationPage:
    try:
        return invitations.list_invitations(client(), status=status, cursor=cursor, limit=PAGE_SIZE)
    except SynapseRefused as refused:
        # A cursor the module refuses (an edited URL) means the first page, not an error.
        if cursor is None or refused.errcode != "M_INVALID_PARAM":
            raise
        return invitations.list_invitations(client(), status=status, cursor=None, limit=PAGE_SIZE)


@bp.post("/<invitation_id>/revoke")
def revoke(invitation_id: str):
    back = url_for("invitations.page")
    form = ConfirmForm()
    if not form.validate_on_submit():
        return redirect(back)
    # What the page shows and the audit log records comes from the module, not the form.
    invitation = invitations.get_invitation(client(), invitation_id)
    target = f"{invitation.address} into {invitation.room_id}"
    ask = Confirmation(
        _(
            "Revoke the invitation of %(address)s into %(room)s?",
            address=invitation.address,
            room=invitation.room_name or invitation.room_id,
        ),
        _(
            "The address can no longer create an account through this invitation, and the room "
            "no longer shows it as invited. This cannot be undone: a member of the room may "
            "invite the address again."
        ),
        _("Revoke"),
    )
    asking = confirmed(form, ask=ask, back=back)
    if asking is not None:
        return asking

    def run() -> str:
        return WITHDRAWN if invitations.revoke(client(), invitation_id) else STILL_SHOWN

    done = perform(
        action="invitation.revoke",
        target=target,
        operation=run,
        success=_("The invitation of %(address)s is revoked.", address=invitation.address),
    )
    if done == STILL_SHOWN:
        flash(
            _(
                "Nobody left in the room may invite, so the room still shows the invitation; "
                "it can no longer be used."
            ),
            "warning",
        )
    return redirect(back)
