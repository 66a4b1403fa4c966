# SPDX-License-Identifier: AGPL-3.0-or-later
"""The Synapse module: validated config, loaded by the real Synapse with one version line, its
reaches into Synapse checked at load (a Synapse that lacks one stops with what changed), and
its tables created once however many callers ask while the creation is under way."""

from __future__ import annotations

import re
import sqlite3
import uuid
from pathlib import Path
from types import MethodType, SimpleNamespace
from unittest.mock import Mock

import pytest
from harness import evaluation_settings
from matrix_helpers import SideSynapse
from synapse.config import ConfigError
from synapse.handlers.profile import ProfileHandler
from synapse.module_api import ModuleApi
from synapse.push.pusherpool import PusherPool
from twisted.internet.defer import Deferred, ensureDeferred

import appliance.synapse_module
from appliance import __version__
from appliance.config.layout import Layout
from appliance.synapse_module import ApplianceModule
from appliance.synapse_module.module_tables import ModuleTables
from appliance.synapse_module.synapse_internals import (
    SYNAPSE_COLUMNS,
    SYNAPSE_VERSION,
    WRITTEN_FOR,
    SynapseChanged,
    column_problems,
    columns_of_txn,
)


def test_config_is_parsed_and_normalised():
    config = ApplianceModule.parse_config(
        {"allowed_domains": ["AC-Paris.FR", "*.gouv.fr", "ac-paris.fr"], "clamd": {"port": 3311}}
    )
    assert config.allowed_domains == ("ac-paris.fr", "*.gouv.fr")
    assert config.clamd.port == 3311 and config.clamd.host == "127.0.0.1"


@pytest.mark.parametrize(
    "config, path, message",
    [
        ({"alowed_domains": []}, ("alowed_domains",), "unknown key"),
        ({"allowed_domains": "ac-paris.fr"}, ("allowed_domains",), "must be a list"),
        ({"allowed_domains": ["ok.fr", "not a domain"]}, ("allowed_domains", "1"), ""),
        ({"clamd": {"port": "3310"}}, ("clamd", "port"), "port number"),
        ({"clamd": {"timeout_seconds": 0}}, ("clamd", "timeout_seconds"), "positive"),
        ({"clamd": {"hots": "x"}}, ("clamd", "hots"), "unknown key"),
        (
            {"notifications_enabled_for_new_users": "yes"},
            ("notifications_enabled_for_new_users",),
            "must be true or false",
        ),
    ],
)
def test_bad_config_names_the_key(config, path, message):
    with pytest.raises(ConfigError) as caught:
        ApplianceModule.parse_config(config)
    assert tuple(caught.value.path) == path
    assert message in caught.value.msg


def test_running_synapse_loaded_the_module(appliance):
    log = appliance.layout.logfile("synapse").read_text()
    assert f"appliance module {__version__} loaded: 2 allowed domain entries" in log
    assert "cannot run on Synapse" not in log


# Reaches into Synapse -----------------------------------------------------------------------


class StoreBeforeAnUpgrade:
    """A data store as a Synapse upgrade could leave it: get_rooms_for_user renamed."""

    db_pool = SimpleNamespace(_database_config=None, engine=None)

    async def get_user_id_by_threepid(self, medium: str, address: str) -> str | None:
        return None

    async def get_rooms_for_user_ids(self, user_ids: list[str]) -> dict:
        return {}

    async def search_user_dir(self, *args: object) -> dict:
        return {}


def test_the_module_refuses_to_load_on_a_synapse_that_lacks_a_method_it_calls():
    api = Mock(spec=ModuleApi)
    api._hs = Mock()
    api._hs.get_datastores.return_value.main = StoreBeforeAnUpgrade()
    # Synapse's own profile check, bound to a stand-in: the reach it patches is still there.
    check = MethodType(ProfileHandler.check_profile_query_allowed, object())
    api._hs.get_profile_handler.return_value = SimpleNamespace(check_profile_query_allowed=check)
    add_pusher = MethodType(PusherPool.add_or_update_pusher, object())  # reach 17, still there
    api._hs.get_pusherpool.return_value = SimpleNamespace(add_or_update_pusher=add_pusher)

    with pytest.raises(SynapseChanged) as refused:
        ApplianceModule(ApplianceModule.parse_config({"allowed_domains": ["ac-paris.fr"]}), api)

    assert str(refused.value) == (
        f"The appliance module cannot run on Synapse {SYNAPSE_VERSION} (it was written for "
        f"Synapse {WRITTEN_FOR}): the data store StoreBeforeAnUpgrade has no method "
        "get_rooms_for_user. See appliance/synapse_module/synapse_internals.py for each reach "
        "and why."
    )
    # Refused before anything was registered or started: no half-loaded module.
    assert [call for call in api.method_calls if not call[0].startswith("_hs.")] == []


def test_the_module_refuses_to_load_when_synapse_adds_pushers_differently():
    # Reach 17: the email pusher of new accounts, as Synapse's registration adds it.
    async def add_or_update_pusher(user_id: str, kind: str, app_id: str) -> None: ...

    api = Mock(spec=ModuleApi)
    api._hs = Mock()
    check = MethodType(ProfileHandler.check_profile_query_allowed, object())
    api._hs.get_profile_handler.return_value = SimpleNamespace(check_profile_query_allowed=check)
    api._hs.get_pusherpool.return_value = SimpleNamespace(add_or_update_pusher=add_or_update_pusher)

    with pytest.raises(SynapseChanged, match="PusherPool.add_or_update_pusher no longer takes"):
        ApplianceModule(ApplianceModule.parse_config({}), api)


def test_the_module_refuses_to_load_without_the_homeserver_behind_the_module_api():
    with pytest.raises(SynapseChanged, match="ModuleApi has no _hs"):
        ApplianceModule(ApplianceModule.parse_config({}), Mock(spec=ModuleApi))


class SQLiteTransaction:
    """A cursor on a Synapse SQLite database, standing for Synapse's LoggingTransaction."""

    database_engine = None  # not PostgreSQL

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._cursor = connection.cursor()

    def execute(self, sql: str, args: tuple = ()) -> None:
        self._cursor.execute(sql, args)

    def fetchall(self) -> list[tuple]:
        return self._cursor.fetchall()


def test_the_running_synapses_schema_holds_every_column_and_a_missing_one_is_named(appliance):
    database = appliance.layout.synapse_dir / "homeserver.db"
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as connection:
        txn = SQLiteTransaction(connection)
        schema = {table: columns_of_txn(txn, table) for table in SYNAPSE_COLUMNS}
    assert column_problems(schema, "sqlite") == []

    schema["open_id_tokens"].discard("ts_valid_until_ms")
    del schema["user_ips"]
    assert column_problems(schema, "sqlite") == [
        "Synapse's database has no table user_ips",
        "the table open_id_tokens has no column ts_valid_until_ms",
    ]


# A table after FROM, JOIN, INTO, ON (an index's), or UPDATE ... SET, in the module's SQL strings.
_TABLE_IN_SQL = re.compile(
    r"\b(?:FROM|JOIN|INTO|ON)\s+([a-z_][a-z_.]*)(?=[\s(,]|$)|\bUPDATE\s+([a-z_]+)\s+SET\b"
)


def test_every_synapse_table_the_modules_sql_reads_is_declared_and_checked():
    """A query on a Synapse table not listed in SYNAPSE_COLUMNS would escape the start-up
    check: find every table named in the module's SQL strings."""
    package = Path(appliance.synapse_module.__file__).parent
    named: set[str] = set()
    for source in package.rglob("*.py"):
        for string in re.findall(r'"([^"]*)"', source.read_text()):
            named.update(name for match in _TABLE_IN_SQL.findall(string) for name in match if name)
    synapse_tables = {
        table
        for table in named
        if not table.startswith("appliance_")
        and table != "sqlite_master"
        and not table.startswith("information_schema.")
    }
    assert "users" in synapse_tables and "user_threepids" in synapse_tables  # found at all
    assert synapse_tables <= set(SYNAPSE_COLUMNS), synapse_tables - set(SYNAPSE_COLUMNS)


class SlowDatabase:
    """Stands for the module API's database: each interaction waits until the test ends it, as
    a CREATE TABLE does while PostgreSQL takes its locks."""

    def __init__(self) -> None:
        self.interactions: list[Deferred] = []

    def should_run_background_tasks(self) -> bool:
        return True  # the process that creates the tables

    def run_as_background_process(self, desc: str, func, *args) -> Deferred:
        return ensureDeferred(func(*args))

    def run_db_interaction(self, desc: str, func, *args) -> Deferred:
        self.interactions.append(Deferred())
        return self.interactions[-1]


def outcomes(*calls: Deferred) -> list:
    """What each call ended with so far: a value, an exception, or ... while it waits."""
    ended: list = [...] * len(calls)
    for n, call in enumerate(calls):
        call.addCallbacks(
            lambda value, n=n: ended.__setitem__(n, value),
            lambda failure, n=n: ended.__setitem__(n, failure.value),
        )
    return ended


def test_callers_during_the_creation_wait_for_it_rather_than_create_again():
    # Concurrent CREATE TABLE IF NOT EXISTS can fail on PostgreSQL (unique violation on pg_type).
    database = SlowDatabase()
    tables = ModuleTables(database, "appliance_test", ("CREATE TABLE IF NOT EXISTS t (x INT)",))
    tables.start()  # the start-up creation, then two callers while it runs
    ended = outcomes(ensureDeferred(tables.ready()), ensureDeferred(tables.ready()))

    assert len(database.interactions) == 1 and ended == [..., ...]
    database.interactions[0].callback(None)
    assert ended == [None, None]
    assert outcomes(ensureDeferred(tables.ready())) == [None]  # done: no more creating
    assert len(database.interactions) == 1


def test_a_failed_creation_fails_every_waiting_caller_and_the_next_one_tries_again():
    database = SlowDatabase()
    tables = ModuleTables(database, "appliance_test", ("CREATE TABLE IF NOT EXISTS t (x INT)",))
    ended = outcomes(ensureDeferred(tables.ready()), ensureDeferred(tables.ready()))
    refused = RuntimeError("the database is away")
    database.interactions[0].errback(refused)
    assert ended == [refused, refused]

    again = outcomes(ensureDeferred(tables.ready()))
    assert len(database.interactions) == 2 and again == [...]
    database.interactions[1].callback(None)
    assert again == [None]


# Every concern wired, on the running Synapse ---------------------------------------------------

ADMIN_ENDPOINTS = ("domains", "users", "quarantine", "invitations")


@pytest.mark.parametrize("endpoint", ADMIN_ENDPOINTS)
def test_each_admin_endpoint_is_served_to_admins_only(client, admin_token, endpoint):
    path = f"/_synapse/client/appliance/v1/{endpoint}"
    assert client.get(path, token=admin_token).status_code == 200
    anonymous = client.get(path)
    assert (anonymous.status_code, anonymous.json()["errcode"]) == (401, "M_MISSING_TOKEN")


def test_the_identity_service_turns_an_openid_token_into_its_own_and_refuses_a_forged_one(
    client, synapse_url
):
    # Read from Synapse's open_id_tokens table (a worker's store lacks the method for it).
    account = client.register_account(f"openid.{uuid.uuid4().hex[:8]}@ac-paris.fr")
    openid = client.post(
        f"/_matrix/client/v3/user/{account.user_id}/openid/request_token",
        {},
        token=account.access_token,
    )
    assert openid.status_code == 200, openid.text

    registered = client.post("/_matrix/identity/v2/account/register", openid.json())
    assert registered.status_code == 200, registered.text
    token = registered.json()["token"]
    assert client.get("/_matrix/identity/v2/account", token=token).json() == {
        "user_id": account.user_id
    }

    forged = client.post(
        "/_matrix/identity/v2/account/register", {**openid.json(), "access_token": "forged"}
    )
    assert (forged.status_code, forged.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    assert forged.json()["error"] == "The OpenID token is unknown or expired"


def test_synapse_does_not_start_when_a_table_the_module_reads_has_gone(tmp_path):
    """End to end: a real Synapse whose database lost a table the module reads (as an upgrade
    that renames it would leave it) exits during start-up, and its log says what changed."""
    settings = evaluation_settings(tmp_path)
    layout = Layout.from_settings(settings, tmp_path)
    with SideSynapse(settings, layout, with_mail_sink=False):
        pass  # a first start creates Synapse's schema and the module's tables
    with sqlite3.connect(layout.synapse_dir / "homeserver.db") as connection:
        connection.execute("ALTER TABLE open_id_tokens RENAME TO open_id_tokens_renamed")

    with pytest.raises(RuntimeError, match="exited during start-up"):
        with SideSynapse(settings, layout, with_mail_sink=False):
            pass

    log = layout.logfile("synapse").read_text()
    assert (
        f"The appliance module cannot run on Synapse {SYNAPSE_VERSION} (it was written for "
        f"Synapse {WRITTEN_FOR}): Synapse's database has no table open_id_tokens." in log
    )
