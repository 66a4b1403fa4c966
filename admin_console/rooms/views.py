# SPDX-License-Identifier: AGPL-3.0-or-later
"""The room pages. Never message contents: only names, state and members."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from flask import Blueprint, abort, redirect, render_template, request, url_for
from flask_babel import gettext as _

from admin_console.actions import Confirmation, confirmed, perform, toggle
from admin_console.auth import require_login
from admin_console.forms import ActionForm
from admin_console.pagination import offset_arg
from admin_console.rooms.forms import DeleteRoomForm
from admin_console.rooms.kinds import KIND_LABELS, room_kind
from admin_console.synapse_admin import client, rooms

bp = Blueprint("rooms", __name__, url_prefix="/rooms")
bp.before_request(require_login)
PAGE_SIZE = 25
# While a purge runs, its page reloads itself (a meta refresh: the CSP allows no script).
PROGRESS_REFRESH_SECONDS = 2


def _kinds(room_list: list[rooms.Room]) -> dict[str, str]:
    synapse = client()
    with ThreadPoolExecutor(max_workers=4) as pool:
        rules = pool.map(lambda room: rooms.access_rule(synapse, room.room_id), room_list)
        return {
            room.room_id: room_kind(rule, room.join_rules)
            for room, rule in zip(room_list, rules, strict=True)
        }


@bp.get("/")
def page():
    search = request.args.get("q", "").strip()
    result = rooms.list_rooms(client(), search, offset_arg(), PAGE_SIZE)
    return render_template(
        "rooms/list.html",
        result=result,
        kinds=_kinds(result.rows),
        labels=KIND_LABELS,
        q=search,
        page_size=PAGE_SIZE,
    )


@bp.get("/<room_id>")
def detail(room_id: str):
    synapse = client()
    room = rooms.get_room(synapse, room_id)
    return render_template(
        "rooms/detail.html",
        room=room,
        kind=room_kind(rooms.access_rule(synapse, room_id), room.join_rules),
        labels=KIND_LABELS,
        members=rooms.members(synapse, room_id),
        blocked=rooms.is_blocked(synapse, room_id),
        action_form=ActionForm(),
        delete_form=DeleteRoomForm(),
    )


def _detail_url(room_id: str) -> str:
    return url_for("rooms.detail", room_id=room_id)


@bp.post("/<room_id>/<any(publish,unpublish):change>")
def publish(room_id: str, change: str):
    if not ActionForm().validate_on_submit():
        abort(400)
    on = change == "publish"
    perform(
        action=f"room.{change}",
        target=room_id,
        operation=lambda: rooms.set_published(client(), room_id, on),
        success=_("The room is listed in the directory.")
        if on
        else _("The room is no longer listed in the directory."),
    )
    return redirect(_detail_url(room_id))


@bp.post("/<room_id>/<any(block,unblock):change>")
def block(room_id: str, change: str):
    on = change == "block"
    return toggle(
        action=f"room.{change}",
        target=room_id,
        on=on,
        switch=lambda state: rooms.set_blocked(client(), room_id, state),
        ask=Confirmation(
            _("Block %(room)s?", room=room_id),
            _("Nobody on this server can join the room any more; current members stay."),
            _("Block"),
        ),
        success=_("The room is blocked.") if on else _("The room is no longer blocked."),
        back=_detail_url(room_id),
    )


@bp.post("/<room_id>/delete")
def delete(room_id: str):
    form = DeleteRoomForm()
    asking = confirmed(
        form,
        ask=Confirmation(
            _("Delete %(room)s and purge it?", room=room_id),
            _(
                "Every local member is removed and the room's history is purged from the "
                "server's database. This cannot be undone."
            ),
            _("Delete and purge"),
        ),
        back=_detail_url(room_id),
    )
    if asking is not None:
        return asking
    blocked = form.block.data
    delete_id = perform(
        action="room.delete" + (".block" if blocked else ""),
        target=room_id,
        operation=lambda: rooms.start_delete(client(), room_id, block=blocked),
        success=_("Deletion started."),
    )
    if delete_id is None:
        return redirect(_detail_url(room_id))
    return redirect(url_for("rooms.delete_progress", delete_id=delete_id))


@bp.get("/deletions/<delete_id>")
def delete_progress(delete_id: str):
    status = rooms.delete_status(client(), delete_id)
    return render_template(
        "rooms/delete_status.html",
        status=status,
        refresh=None if status.finished else PROGRESS_REFRESH_SECONDS,
    )
