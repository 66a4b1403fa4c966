"""The Synapse module: validated config, loaded by the real Synapse with one version line, and
its tables created once however many callers ask while the creation is under way."""

from __future__ import annotations

import pytest
from synapse.config import ConfigError
from twisted.internet.defer import Deferred, ensureDeferred

from appliance import __version__
from appliance.synapse_module import ApplianceModule
from appliance.synapse_module.module_tables import ModuleTables


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
