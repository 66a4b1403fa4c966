# SPDX-License-Identifier: AGPL-3.0-or-later
"""An account's email address through Synapse's Admin API: who holds an address, and binding a
new one in place of the old (with the display name, in the same call)."""

from __future__ import annotations

from admin_console.synapse_admin.client import SynapseClient, SynapseRefused, segment


def holder_of(synapse: SynapseClient, address: str) -> str | None:
    """The account the address is bound to, if any."""
    try:
        body = synapse.get(f"/_synapse/admin/v1/threepid/email/users/{segment(address)}")
    except SynapseRefused as error:
        if error.status == 404:
            return None
        raise
    return body.get("user_id")


def replace_email(synapse: SynapseClient, user_id: str, address: str, displayname: str) -> None:
    """Bind `address` as the account's only email (other kinds of 3PID stay) and set its name.

    Synapse unbinds the addresses left out and deletes their email pushers."""
    path = f"/_synapse/admin/v2/users/{segment(user_id)}"
    others = [t for t in synapse.get(path).get("threepids", []) if t.get("medium") != "email"]
    synapse.put(
        path,
        {
            "threepids": [*others, {"medium": "email", "address": address}],
            "displayname": displayname,
        },
    )
