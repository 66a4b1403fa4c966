# SPDX-License-Identifier: AGPL-3.0-or-later
"""Tests for the invitation quotas' SQL (appliance.synapse_module.externals.store) on SQLite:
the sliding window, the honesty of retry_after_ms, and the pending invitation kept."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.synapse_module.externals import store
from appliance.synapse_module.externals.store import Exhausted, Invitation, Quota

WINDOW = 60_000


class Transaction:
    """What the store's functions use of Synapse's LoggingTransaction, on an sqlite3 cursor
    (Synapse's own placeholders on SQLite are "?" too)."""

    database_engine = type("Engine", (), {"module": sqlite3})

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._cursor = connection.cursor()

    def execute(self, sql: str, args: tuple = ()) -> None:
        self._cursor.execute(sql, args)

    def fetchall(self) -> list[tuple]:
        return self._cursor.fetchall()

    def fetchone(self) -> tuple | None:
        return self._cursor.fetchone()

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount


@pytest.fixture
def txn() -> Transaction:
    connection = sqlite3.connect(":memory:")
    for statement in store._SCHEMA:
        connection.execute(statement)
    return Transaction(connection)


def invitation(number: int, at_ms: int, room: str = "!r:x", inviter: str = "@a:x") -> Invitation:
    return Invitation(f"t{number}", f"l{number}", f"p{number}@x.example", room, inviter, at_ms)


def add(txn: Transaction, number: int, at_ms: int, most: int, **where) -> Invitation | Exhausted:
    new = invitation(number, at_ms, **where)
    return store._add_within_txn(txn, new, (Quota("inviter", new.inviter, most, WINDOW),))


@given(times=st.lists(st.integers(0, 3 * WINDOW), min_size=1, max_size=30), most=st.integers(1, 6))
def test_no_window_ever_holds_more_than_the_quota_and_retry_after_is_exact(times, most):
    connection = sqlite3.connect(":memory:")
    for statement in store._SCHEMA:
        connection.execute(statement)
    txn = Transaction(connection)
    accepted: list[int] = []
    for number, at in enumerate(sorted(times)):
        result = add(txn, number, at, most)
        if isinstance(result, Exhausted):
            wait = result.retry_after_ms
            # Refused: the window ending now is full, and it has a place exactly `wait` later.
            assert len([t for t in accepted if at - WINDOW < t <= at]) >= most
            assert len([t for t in accepted if at + wait - WINDOW < t <= at + wait]) < most
            assert len([t for t in accepted if at + wait - 1 - WINDOW < t <= at + wait - 1]) >= (
                most
            )
        else:
            accepted.append(at)
        assert all(len([t for t in accepted if e - WINDOW < t <= e]) <= most for e in accepted)


def test_a_refusal_adds_nothing(txn):
    for number in range(3):
        assert isinstance(add(txn, number, 1000 + number, most=3), Invitation)

    refused = add(txn, 9, 2000, most=3)

    assert refused == Exhausted(Quota("inviter", "@a:x", 3, WINDOW), 1000 + WINDOW - 2000)
    txn.execute("SELECT COUNT(*) FROM appliance_external_invitations")
    assert txn.fetchone() == (3,)


def test_an_invitation_pending_for_the_room_and_address_is_returned_not_doubled(txn):
    first = invitation(1, 1000)
    store._add_within_txn(txn, first, ())

    again = store._add_within_txn(txn, first.__class__(**{**first.__dict__, "token": "t2"}), ())

    assert again == first
    txn.execute("SELECT COUNT(*) FROM appliance_external_invitations")
    assert txn.fetchone() == (1,)


def test_only_the_two_counted_columns_reach_the_sql(txn):
    with pytest.raises(ValueError):
        store._exhausted_txn(txn, (Quota("1=1; --", "x", 1, WINDOW),), 0)
