# SPDX-License-Identifier: AGPL-3.0-or-later
"""The federation page: each peer of the settings (server, role, URL) with Synapse's record of
it (federation destinations Admin API): never contacted, reachable, or failing since when and
retried when; a button resets a peer's back-off.  In open mode a permanent warning says that
every Matrix server may reach this one.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, abort, current_app, redirect, render_template, url_for
from flask_babel import gettext as _

from admin_console.actions import perform
from admin_console.auth import require_login
from admin_console.forms import ActionForm
from admin_console.synapse_admin import SynapseRefused, SynapseUnavailable, client
from admin_console.synapse_admin.federation import Destination, destination, reset_connection

bp = Blueprint("federation", __name__, url_prefix="/federation")
bp.before_request(require_login)


@dataclass(frozen=True)
class PeerRow:
    server_name: str
    role: str
    base_url: str
    destination: Destination | None
    error: str | None  # Synapse could not say


def open_federation_warning() -> str | None:
    """The permanent warning of open mode (also on the health page)."""
    if current_app.config.get("FEDERATION_MODE") != "open":
        return None
    return _(
        "Federation is open: any Matrix server can reach this one, and its users are judged "
        "as externals. Close it (federation.mode: closed) unless you really mean it."
    )


def _peers() -> list[dict]:
    return list(current_app.config.get("FEDERATION_PEERS") or [])


def _row(peer: dict) -> PeerRow:
    try:
        found, error = destination(client(), peer["server_name"]), None
    except (SynapseUnavailable, SynapseRefused) as failure:
        found, error = None, str(failure)
    return PeerRow(peer["server_name"], peer["role"], peer.get("base_url", ""), found, error)


@bp.get("/")
def page():
    return render_template(
        "federation/list.html",
        mode=current_app.config.get("FEDERATION_MODE", "off"),
        rows=[_row(peer) for peer in _peers()],
        warning=open_federation_warning(),
        action_form=ActionForm(),
    )


@bp.post("/<path:server_name>/reset")
def reset(server_name: str):
    """Forget Synapse's back-off towards a peer (after an outage it may wait hours)."""
    if server_name not in {peer["server_name"] for peer in _peers()}:
        abort(404)
    if not ActionForm().validate_on_submit():
        abort(400)
    perform(
        action="federation.reset",
        target=server_name,
        operation=lambda: reset_connection(client(), server_name),
        success=_("Synapse will try %(server)s again at once.", server=server_name),
    )
    return redirect(url_for("federation.page"))
