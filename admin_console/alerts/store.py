# SPDX-License-Identifier: AGPL-3.0-or-later
"""The alerts' tables in the console's database: who wants alert mail, and open incidents.

An operator opts in with an address (one row in `alert_subscriptions`; removing the operator
removes it, by the foreign key). An incident is one row per red condition, from the first red
check to the first green one, so a console restart or another worker taking over keeps it.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_subscriptions (
    operator_id INTEGER PRIMARY KEY REFERENCES operators (id) ON DELETE CASCADE,
    email TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_incidents (
    condition TEXT PRIMARY KEY,
    opened_at REAL NOT NULL,
    last_mailed_at REAL NOT NULL,
    summary TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Incident:
    condition: str
    opened_at: float
    last_mailed_at: float
    summary: str


def create_tables(connection: sqlite3.Connection) -> None:
    connection.executescript(f"BEGIN IMMEDIATE;\n{SCHEMA}\nCOMMIT;")


def subscription(connection: sqlite3.Connection, operator_id: int) -> str | None:
    row = connection.execute(
        "SELECT email FROM alert_subscriptions WHERE operator_id = ?", (operator_id,)
    ).fetchone()
    return row["email"] if row else None


def subscribe(connection: sqlite3.Connection, operator_id: int, email: str) -> None:
    connection.execute(
        "INSERT INTO alert_subscriptions (operator_id, email) VALUES (?, ?)"
        " ON CONFLICT (operator_id) DO UPDATE SET email = excluded.email",
        (operator_id, email),
    )


def unsubscribe(connection: sqlite3.Connection, operator_id: int) -> bool:
    return bool(
        connection.execute(
            "DELETE FROM alert_subscriptions WHERE operator_id = ?", (operator_id,)
        ).rowcount
    )


def subscriptions(connection: sqlite3.Connection) -> dict[int, str]:
    """Each opted-in operator's id and address."""
    rows = connection.execute("SELECT operator_id, email FROM alert_subscriptions").fetchall()
    return {row["operator_id"]: row["email"] for row in rows}


def recipients(connection: sqlite3.Connection) -> list[str]:
    rows = connection.execute("SELECT email FROM alert_subscriptions ORDER BY email").fetchall()
    return [row["email"] for row in rows]


def open_incidents(connection: sqlite3.Connection) -> dict[str, Incident]:
    rows = connection.execute("SELECT * FROM alert_incidents").fetchall()
    return {
        row["condition"]: Incident(
            row["condition"], row["opened_at"], row["last_mailed_at"], row["summary"]
        )
        for row in rows
    }


def save_incident(connection: sqlite3.Connection, incident: Incident) -> None:
    connection.execute(
        "INSERT OR REPLACE INTO alert_incidents VALUES (?, ?, ?, ?)",
        (incident.condition, incident.opened_at, incident.last_mailed_at, incident.summary),
    )


def close_incident(connection: sqlite3.Connection, condition: str) -> None:
    connection.execute("DELETE FROM alert_incidents WHERE condition = ?", (condition,))
