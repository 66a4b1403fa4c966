# SPDX-License-Identifier: AGPL-3.0-or-later
"""The audit log: every operator action with who, what, on what, when and the result.

Rows are never changed; they are deleted once older than the retention period (`prune`).
Search is a substring match on operator, action, target and detail.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class Entry:
    id: int
    at: float  # Unix time
    operator: str
    action: str
    target: str
    ok: bool
    detail: str

    @property
    def when(self) -> datetime:
        return datetime.fromtimestamp(self.at, tz=UTC)


def add(
    connection: sqlite3.Connection,
    *,
    operator: str,
    action: str,
    target: str,
    ok: bool,
    detail: str = "",
    at: float | None = None,
) -> None:
    connection.execute(
        "INSERT INTO audit_log (at, operator, action, target, ok, detail)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (time.time() if at is None else at, operator, action, target, int(ok), detail),
    )


def prune(connection: sqlite3.Connection, older_than: float) -> int:
    """Delete the entries made before older_than (Unix time); return how many went."""
    return connection.execute("DELETE FROM audit_log WHERE at < ?", (older_than,)).rowcount


def _where(search: str) -> tuple[str, tuple]:
    if not search:
        return "", ()
    pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    columns = ("operator", "action", "target", "detail")
    clause = " OR ".join(f"{column} LIKE ? ESCAPE '\\'" for column in columns)
    return f"WHERE {clause}", (pattern,) * len(columns)


def search(
    connection: sqlite3.Connection, text: str = "", offset: int = 0, limit: int = 50
) -> tuple[list[Entry], int]:
    """One page of entries matching text, newest first, and how many match in all."""
    where, args = _where(text)
    total = connection.execute(f"SELECT COUNT(*) FROM audit_log {where}", args).fetchone()[0]
    rows = connection.execute(
        f"SELECT * FROM audit_log {where} ORDER BY id DESC LIMIT ? OFFSET ?",
        (*args, limit, offset),
    ).fetchall()
    return [_entry(row) for row in rows], total


def iterate(connection: sqlite3.Connection, text: str = "") -> Iterator[Entry]:
    """Every matching entry, oldest first, streamed (for the CSV export)."""
    where, args = _where(text)
    for row in connection.execute(f"SELECT * FROM audit_log {where} ORDER BY id", args):
        yield _entry(row)


def _entry(row: sqlite3.Row) -> Entry:
    return Entry(
        row["id"],
        row["at"],
        row["operator"],
        row["action"],
        row["target"],
        bool(row["ok"]),
        row["detail"],
    )
