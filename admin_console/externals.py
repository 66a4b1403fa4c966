# SPDX-License-Identifier: AGPL-3.0-or-later
"""Who is an external guest, decided in this one place: by the appliance module's record.

The module records an external when its account is created (`appliance_externals`), and its
user list endpoint (`/_synapse/client/appliance/v1/users`) says `external` for each account.
A display name never decides it: names are chosen by people, and an address's domain can be
added to or removed from the allowlist after the account exists.
"""

from __future__ import annotations

from collections.abc import Callable

from admin_console.synapse_admin.client import SynapseClient
from admin_console.synapse_admin.user_list import list_user_page

__all__ = ["DomainCheck", "is_external"]

# An email address -> whether its domain is allowed (the module's one-address lookup).
DomainCheck = Callable[[str], bool]


def is_external(synapse: SynapseClient, user_id: str) -> bool:
    """Whether the module recorded ``user_id`` as an external (a Matrix ID search matches it
    first, as the list is in user ID order)."""
    page = list_user_page(synapse, kind="all", search=user_id, cursor=None, limit=1)
    return any(user.user_id == user_id and user.external for user in page.users)
