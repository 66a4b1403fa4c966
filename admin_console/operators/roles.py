# SPDX-License-Identifier: AGPL-3.0-or-later
"""Operators' roles: administrators change things; auditors see everything and change nothing.

The rule is enforced on the server for every request (`refusal_for_auditor`, run by
`auth.require_login` before each view): an auditor's request that is not a read (GET, HEAD) is
refused with 403 whatever the page offers, except for what concerns the auditor alone (their own
password and second factor, logging out, the language).
"""

from __future__ import annotations

import sqlite3

from admin_console import db
from admin_console.operators import store

ADMINISTRATOR = "administrator"
AUDITOR = "auditor"
ROLES = (ADMINISTRATOR, AUDITOR)
READS = frozenset({"GET", "HEAD", "OPTIONS"})
# An auditor's own account: these change nothing of the appliance.
SELF_SERVICE = frozenset(
    {
        "operators.change_password",
        "operators.alerts",
        "second_factor.enrol",
        "second_factor.confirm",
        "second_factor.remove",
    }
)


class LastAdministrator(Exception):
    """This change would leave the console without an administrator."""


def role_of(connection: sqlite3.Connection, operator_id: int) -> str:
    row = connection.execute(
        "SELECT role FROM operator_roles WHERE operator_id = ?", (operator_id,)
    ).fetchone()
    return row["role"] if row else ADMINISTRATOR


def all_roles(connection: sqlite3.Connection) -> dict[int, str]:
    rows = connection.execute("SELECT operator_id, role FROM operator_roles").fetchall()
    return {row["operator_id"]: row["role"] for row in rows}


def _administrators(connection: sqlite3.Connection) -> int:
    return connection.execute(
        "SELECT COUNT(*) FROM operators o LEFT JOIN operator_roles r ON r.operator_id = o.id"
        " WHERE COALESCE(r.role, ?) = ?",
        (ADMINISTRATOR, ADMINISTRATOR),
    ).fetchone()[0]


def set_role(connection: sqlite3.Connection, operator_id: int, role: str) -> None:
    """Give the operator this role; never take the last administrator's away."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    with db.transaction(connection):
        if role != ADMINISTRATOR and role_of(connection, operator_id) == ADMINISTRATOR:
            if _administrators(connection) <= 1:
                raise LastAdministrator("the last administrator must stay one")
        connection.execute(
            "INSERT INTO operator_roles (operator_id, role) VALUES (?, ?)"
            " ON CONFLICT (operator_id) DO UPDATE SET role = excluded.role",
            (operator_id, role),
        )


def is_last_administrator(connection: sqlite3.Connection, operator_id: int) -> bool:
    return role_of(connection, operator_id) == ADMINISTRATOR and _administrators(connection) <= 1


def remove_operator(connection: sqlite3.Connection, operator_id: int) -> None:
    """Remove an operator, never the last one nor the last administrator, checked and done in
    one immediate transaction (two administrators removing each other at once: one of them is
    refused). Their logins go with them (operator_sessions' foreign key cascades)."""
    with db.transaction(connection):
        if connection.execute("SELECT COUNT(*) FROM operators").fetchone()[0] <= 1:
            raise store.LastOperator("the last operator cannot be removed")
        if is_last_administrator(connection, operator_id):
            raise LastAdministrator("the last administrator cannot be removed")
        connection.execute("DELETE FROM operators WHERE id = ?", (operator_id,))


def auditor_may(method: str, endpoint: str | None) -> bool:
    """Whether an auditor may make this request."""
    return method in READS or endpoint in SELF_SERVICE
