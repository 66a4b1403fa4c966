# SPDX-License-Identifier: AGPL-3.0-or-later
"""The details of one page of the admin user list, read by user from Synapse's tables.

A page is a few dozen users: each table (users, profiles, user_threepids, user_ips, the
module's externals) is read once for the whole page, by its index on the user, so the cost
depends on the page size only.  These are Synapse's own tables, which the module API does not
expose: :mod:`.synapse_internals` reads them (see :mod:`.user_list_query`); this module shapes
the rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from synapse.module_api import LoggingTransaction

from appliance.synapse_module.synapse_internals import (
    display_names_txn,
    email_addresses_txn,
    last_seen_txn,
    user_accounts_txn,
)


@dataclass(frozen=True)
class UserRow:
    name: str
    displayname: str | None
    admin: bool
    deactivated: bool
    shadow_banned: bool
    locked: bool
    user_type: str | None
    creation_ts: int | None  # milliseconds, as in the Admin API
    external: bool
    emails: tuple[str, ...] = ()
    last_seen_ts: int | None = None

    def to_json(self) -> dict:
        return {**self.__dict__, "emails": list(self.emails)}


def rows_for_txn(txn: LoggingTransaction, user_ids: Sequence[str]) -> list[UserRow]:
    """The listed details of the given users, in the given order (a page: a few dozen).

    Each table is read by its index on the user, one query per table for the whole page.
    """
    if not user_ids:
        return []
    found = user_accounts_txn(txn, user_ids)
    names = display_names_txn(txn, user_ids)
    emails = email_addresses_txn(txn, user_ids)
    last_seen = last_seen_txn(txn, user_ids)
    return [
        _user_row(
            found[user_id],
            names.get(user_id),
            tuple(emails.get(user_id, ())),
            last_seen.get(user_id),
        )
        for user_id in user_ids
        if user_id in found
    ]


def _user_row(
    row: tuple, displayname: str | None, emails: tuple[str, ...], last_seen_ts: int | None
) -> UserRow:
    name, admin, deactivated, shadow_banned, locked, user_type, created, external = row
    return UserRow(
        name=name,
        displayname=displayname,
        admin=bool(admin),
        deactivated=bool(deactivated),
        shadow_banned=bool(shadow_banned),
        locked=bool(locked),
        user_type=user_type,
        creation_ts=None if created is None else int(created) * 1000,
        external=bool(external),
        emails=emails,
        last_seen_ts=None if last_seen_ts is None else int(last_seen_ts),
    )
