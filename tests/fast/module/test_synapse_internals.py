# SPDX-License-Identifier: AGPL-3.0-or-later
"""The reaches into Synapse (synapse_internals.py) against Synapse's real schema and classes:
what the start-up check compares with is what this Synapse really has, and each reach works
on a worker's store as on the main process's."""

from __future__ import annotations

from unittest.mock import Mock

import pytest
from synapse.app.generic_worker import GenericWorkerStore
from synapse.storage import DataStore

from appliance.synapse_module.synapse_internals import (
    STORE_METHODS,
    SYNAPSE_COLUMNS,
    SynapseInternals,
    attribute_problems,
    column_problems,
    columns_of_txn,
    email_domain_accounts_txn,
    store_problems,
)


def test_this_synapses_schema_has_every_column_the_module_reads(database):
    txn = database.connection.cursor(txn_name="appliance_test")
    schema = {table: columns_of_txn(txn, table) for table in SYNAPSE_COLUMNS}
    assert column_problems(schema, "sqlite") == []


@pytest.mark.parametrize(
    ("store", "main_process"), [(DataStore, True), (GenericWorkerStore, False)]
)
def test_the_main_process_and_worker_stores_have_every_method_the_module_calls(store, main_process):
    assert store_problems(store, main_process=main_process) == []
    # The method that made account/register answer 500 on a worker is not among them.
    assert "get_user_id_for_open_id_token" not in STORE_METHODS


def test_this_synapse_has_every_attribute_the_module_reads():
    assert attribute_problems() == []


def worker_internals(worker_api) -> SynapseInternals:
    # A worker's store: its names only (reading any other is an error), such as
    # get_user_id_for_open_id_token, which only the main process's store has.
    worker_api._hs = Mock()
    worker_api._hs.get_datastores.return_value.main = Mock(spec=dir(GenericWorkerStore))
    return SynapseInternals(worker_api)


def test_an_openid_token_is_read_on_a_worker(worker_api, database, run):
    database.connection.conn.execute(
        "INSERT INTO open_id_tokens (token, ts_valid_until_ms, user_id) VALUES (?, ?, ?)",
        ("fresh", 2_000, "@pierre:appliance.test"),
    )
    internals = worker_internals(worker_api)

    assert run(internals.user_of_openid_token("fresh", 1_999)) == "@pierre:appliance.test"
    assert run(internals.user_of_openid_token("fresh", 2_001)) is None  # expired
    assert run(internals.user_of_openid_token("forged", 1_000)) is None


def test_accounts_are_counted_by_email_domain_once_each(database):
    rows = [
        ("@a:s", "email", "a@ac-paris.fr"),
        ("@a:s", "email", "a.bis@ac-paris.fr"),  # the same account twice: counted once
        ("@b:s", "email", "b@ac-paris.fr"),
        ("@c:s", "email", "c@dgfip.gouv.fr"),
        ("@d:s", "msisdn", "33612345678"),
    ]
    for user_id, medium, address in rows:
        database.connection.conn.execute(
            "INSERT INTO user_threepids (user_id, medium, address, validated_at, added_at)"
            " VALUES (?, ?, ?, 0, 0)",
            (user_id, medium, address),
        )
    txn = database.connection.cursor(txn_name="appliance_test")

    assert sorted(email_domain_accounts_txn(txn)) == [("ac-paris.fr", 2), ("dgfip.gouv.fr", 1)]
