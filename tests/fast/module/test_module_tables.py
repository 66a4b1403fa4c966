# SPDX-License-Identifier: AGPL-3.0-or-later
"""One routine makes the module's tables (module_tables.ModuleTables), for every store, on the
process that runs background tasks only; and every transaction function follows Synapse's
storage conventions (``_txn``, a ``desc`` naming the module's method)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import appliance.synapse_module
from appliance.antivirus.verdict import Verdict
from appliance.synapse_module.accounts.domain_store import DomainStore
from appliance.synapse_module.externals.identity_key import IdentityKey
from appliance.synapse_module.externals.identity_server import IdentityTokens
from appliance.synapse_module.externals.store import ExternalStore
from appliance.synapse_module.media.scan_store import ScanStore, TablesNotReady
from appliance.synapse_module.module_tables import ModuleTables
from appliance.synapse_module.synapse_internals import USERS_INDEXES

MODULE_TABLES = {
    "appliance_allowed_domains",
    "appliance_allowlist_state",
    "appliance_externals",
    "appliance_external_invitations",
    "appliance_invitation_quota_keys",
    "appliance_identity_key",
    "appliance_identity_tokens",
    "appliance_media_verdicts",
    "appliance_media_quarantine",
}


def start_every_store(api, clock) -> None:
    """The stores as ApplianceModule starts them."""
    for store in (
        DomainStore(api, ("ac-paris.fr",), clock=clock),
        ExternalStore(api),
        IdentityKey(api),
        IdentityTokens(api),
        ScanStore(api),
        ModuleTables(api, "appliance_user_list_indexes", USERS_INDEXES),
    ):
        store.start()


def module_objects(database, kind: str) -> set[str]:
    rows = database.rows(
        "SELECT name FROM sqlite_master WHERE type = ? AND name LIKE 'appliance_%'", (kind,)
    )
    return {name for (name,) in rows}


def test_a_worker_creates_no_table(worker_api, clock, database):
    start_every_store(worker_api, clock)
    assert module_objects(database, "table") == set()
    assert module_objects(database, "index") == set()


def test_the_main_process_creates_every_table_and_the_user_list_indexes(api, clock, database):
    start_every_store(api, clock)
    assert module_objects(database, "table") == MODULE_TABLES
    assert {"appliance_users_admins", "appliance_users_deactivated"} <= module_objects(
        database, "index"
    )


def test_the_scan_store_refuses_on_a_worker_until_the_tables_exist(api, worker_api, run):
    on_worker = ScanStore(worker_api)
    on_worker.start()
    with pytest.raises(TablesNotReady):
        run(on_worker.get_verdict("0" * 64, "eicar-1"))

    ScanStore(api).start()  # the main process creates them

    run(on_worker.record_verdict("0" * 64, "eicar-1", Verdict(clean=True, signature=None), 1))
    assert run(on_worker.get_verdict("0" * 64, "eicar-1")) == Verdict(clean=True, signature=None)


def test_a_failed_creation_refuses_then_the_next_caller_creates(api, database, run):
    database.outage = RuntimeError("the database went away")
    store = ScanStore(api)
    store.start()
    with pytest.raises(TablesNotReady):
        run(store.list_quarantine(0, 10))

    database.outage = None
    assert run(store.list_quarantine(0, 10)) == ([], 0)


# Storage conventions, read from the source: every call, even on paths no test takes.


def database_calls() -> list[tuple[str, int, ast.Call]]:
    package = Path(appliance.synapse_module.__file__).parent
    calls = []
    for source in sorted(package.rglob("*.py")):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("run_db_interaction", "_run")
            ):
                calls.append((source.name, node.lineno, node))
    return calls


def test_every_transaction_function_ends_in_txn_and_every_desc_is_the_modules():
    calls = database_calls()
    assert len(calls) > 20  # found them at all
    for name, line, call in calls:
        desc, func = call.args[0], call.args[1]
        where = f"{name}:{line}"
        if isinstance(func, ast.Name) and func.id == "func":  # ExternalStore._run passes on
            continue
        func_name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        assert func_name.endswith("_txn"), f"{where}: {func_name} runs in a transaction"
        if isinstance(desc, ast.Constant):
            assert str(desc.value).startswith("appliance_"), f"{where}: desc {desc.value!r}"
        else:  # ModuleTables: f"{self._name}_create", its name being appliance_...
            assert isinstance(desc, ast.JoinedStr), f"{where}: desc is a literal"
