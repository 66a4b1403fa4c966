# SPDX-License-Identifier: AGPL-3.0-or-later
"""Login lockout, per username and client, under a ceiling per username.

Five wrong passwords for one username from one client (an IPv4 address, or an IPv6 /64, which
one machine can span) lock that pair for a quarter of an hour. Someone guessing from one place
therefore cannot lock an operator (the first one is always "admin") out from everywhere else.
Fifty for one username from anywhere lock the username everywhere: that bounds a guessing
spread over many addresses, and needs at least ten of them.

Each attempt is counted before the password is checked, in the same IMMEDIATE transaction as
the check of the counts, and its row is deleted when the password proves right. So concurrent
guesses (several console workers, each with threads) cannot all pass the check before any is
counted. An attempt refused because of a lock is not counted: a lock ends a quarter of an hour
after the failure that set it, however often someone knocks.

Counted in the console's database, so every console worker sees the same count, and counted
for unknown usernames too, so a lock says nothing about which operators exist. Rows older than
the window are deleted as attempts come.
"""

from __future__ import annotations

import ipaddress
import sqlite3
from collections.abc import Callable
from typing import TypeVar

MAX_FAILURES = 5  # per username and client
MAX_FAILURES_ANYWHERE = 50  # per username
LOCK_SECONDS = 15 * 60
IPV6_CLIENT_PREFIX = 64

T = TypeVar("T")


class Locked(Exception):
    """The username may not try from this client now."""

    def __init__(self, seconds: int):
        super().__init__(f"locked for {seconds} s")
        self.seconds = seconds


def client_key(remote_addr: str | None) -> str:
    """Who is trying: the IPv4 address, or the IPv6 /64 network."""
    try:
        address = ipaddress.ip_address(remote_addr or "")
    except ValueError:
        return remote_addr or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/{IPV6_CLIENT_PREFIX}", strict=False))
    return str(address)


def guarded(
    connection: sqlite3.Connection,
    *,
    username: str,
    client: str,
    verify: Callable[[], T | None],
    now: float,
) -> T | None:
    """verify()'s result, the attempt being counted as a failure unless that is not None.

    Raises Locked, without calling verify, when username may not try from client now.
    """
    _count_attempt(connection, username, client, now)
    result = verify()
    if result is not None:
        connection.execute(
            "DELETE FROM login_attempts WHERE username = ? AND client = ?", (username, client)
        )
    return result


def _count_attempt(connection: sqlite3.Connection, username: str, client: str, now: float) -> None:
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.execute("DELETE FROM login_attempts WHERE at <= ?", (now - LOCK_SECONDS,))
        locked_for = seconds_locked(connection, username, client, now)
        if not locked_for:
            connection.execute(
                "INSERT INTO login_attempts (username, client, at) VALUES (?, ?, ?)",
                (username, client, now),
            )
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    if locked_for:
        raise Locked(locked_for)


def seconds_locked(connection: sqlite3.Connection, username: str, client: str, now: float) -> int:
    """Seconds until username may try again from client; 0 when it may now."""
    return max(
        _locked_for(
            connection, "username = ? AND client = ?", (username, client), MAX_FAILURES, now
        ),
        _locked_for(connection, "username = ?", (username,), MAX_FAILURES_ANYWHERE, now),
    )


def _locked_for(
    connection: sqlite3.Connection, where: str, args: tuple, limit: int, now: float
) -> int:
    rows = connection.execute(
        f"SELECT at FROM login_attempts WHERE {where} AND at > ? ORDER BY at DESC LIMIT ?",
        (*args, now - LOCK_SECONDS, limit),
    ).fetchall()
    if len(rows) < limit:
        return 0
    # Locked from the limit-th recent failure until LOCK_SECONDS after the most recent one.
    return max(0, int(rows[0]["at"] + LOCK_SECONDS - now) + 1)
