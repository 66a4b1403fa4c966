"""The details of one page of the admin user list, read by user from Synapse's tables.

A page is a few dozen users: each table (users, profiles, user_threepids, user_ips, the
module's externals) is read once for the whole page, by its index on the user, so the cost
depends on the page size only.  These are Synapse's own tables, which the module API does not
expose (see :mod:`.user_list_query`; each table and column is listed in
:data:`.synapse_internals.SYNAPSE_COLUMNS`); SQL has ``?`` placeholders only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from synapse.module_api import LoggingTransaction

from appliance.synapse_module.admin_api.user_list_query import EXTERNAL


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
    marks = ", ".join("?" for _ in user_ids)
    txn.execute(
        "SELECT u.name, u.admin, u.deactivated, u.shadow_banned, u.locked, u.user_type,"
        f" u.creation_ts, {EXTERNAL} FROM users u WHERE u.name IN ({marks})",
        tuple(user_ids),
    )
    found = {row[0]: row for row in txn.fetchall()}
    names = _display_names_txn(txn, user_ids)
    emails = _emails_txn(txn, user_ids, marks)
    last_seen = _last_seen_txn(txn, user_ids, marks)
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


def _display_names_txn(txn: LoggingTransaction, user_ids: Sequence[str]) -> dict[str, str | None]:
    # By localpart, the key Synapse has always indexed: its index on full_user_id is built by
    # a background update, which a freshly upgraded server may not have finished.
    by_localpart = {user_id[1:].split(":", 1)[0]: user_id for user_id in user_ids}
    marks = ", ".join("?" for _ in by_localpart)
    txn.execute(
        f"SELECT user_id, displayname FROM profiles WHERE user_id IN ({marks})",
        tuple(by_localpart),
    )
    return {by_localpart[localpart]: name for localpart, name in txn.fetchall()}


def _emails_txn(
    txn: LoggingTransaction, user_ids: Sequence[str], marks: str
) -> dict[str, list[str]]:
    # By user only: with "medium = 'email'" in the query, SQLite picks the (medium, address)
    # index and reads every address on the server.
    txn.execute(
        f"SELECT user_id, medium, address FROM user_threepids WHERE user_id IN ({marks})"
        " ORDER BY user_id, address",
        tuple(user_ids),
    )
    emails: dict[str, list[str]] = {}
    for user_id, medium, address in txn.fetchall():
        if medium == "email":
            emails.setdefault(user_id, []).append(address)
    return emails


def _last_seen_txn(txn: LoggingTransaction, user_ids: Sequence[str], marks: str) -> dict[str, int]:
    txn.execute(
        f"SELECT user_id, MAX(last_seen) FROM user_ips WHERE user_id IN ({marks}) GROUP BY user_id",
        tuple(user_ids),
    )
    return dict(txn.fetchall())
