# SPDX-License-Identifier: AGPL-3.0-or-later
"""An account's email address through Synapse's Admin API: who holds an address, and binding a
new one in place of the old (with the display name, in the same call)."""

from __future__ import annotations

from admin_console.synapse_admin.client import (
    SynapseClient,
    SynapseRefused,
    SynapseUnavailable,
    segment,
)


def holder_of(synapse: SynapseClient, address: str) -> str | None:
    """The account the address is bound to, if any."""
    try:
        body = synapse.get(f"/_synapse/admin/v1/threepid/email/users/{segment(address)}")
    except SynapseRefused as error:
        if error.status == 404:
            return None
        raise
    return body.get("user_id")


def replace_email(
    synapse: SynapseClient,
    user_id: str,
    address: str,
    *,
    displayname: str,
    previous_displayname: str | None,
) -> None:
    """Bind `address` as the account's only email (other kinds of 3PID stay) and set its name.

    Synapse unbinds the addresses left out and deletes their email pushers. It sets the name
    before the addresses: if binding fails (the address taken meanwhile), the previous name is
    put back, so the account is left as it was, and the error is raised."""
    path = f"/_synapse/admin/v2/users/{segment(user_id)}"
    others = [t for t in synapse.get(path).get("threepids", []) if t.get("medium") != "email"]
    body = {"threepids": [*others, {"medium": "email", "address": address}]}
    try:
        synapse.put(path, {**body, "displayname": displayname})
    except (SynapseRefused, SynapseUnavailable):
        if previous_displayname is not None:
            synapse.put(path, {"displayname": previous_displayname})
        raise
