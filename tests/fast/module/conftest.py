# SPDX-License-Identifier: AGPL-3.0-or-later
"""The module's fast tier: its Synapse callbacks called directly, without starting any service.

The module API is a ``Mock(spec=ModuleApi)``: reading or calling anything Synapse's ModuleApi
lacks is an error.  Its database calls run on an in-memory SQLite database that holds
Synapse's real schema (made once per session by Synapse's own ``make_conn``, which prepares an
in-memory database as Synapse's tests do, then copied for each test) through Synapse's own
``LoggingTransaction``; the module creates its tables there itself.  This is the pattern of
Tchap's synapse-email-account-validity tests.  Every database call is also held to the storage
conventions: its function ends in ``_txn`` and its ``desc`` starts with ``appliance_``.

Coroutines run to completion at once (:func:`settle`): nothing here waits on a reactor, and a
callback that would wait on something never given makes the test fail, not hang.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable, Coroutine
from typing import Any
from unittest.mock import AsyncMock, Mock

import pytest
from synapse.api.room_versions import KNOWN_ROOM_VERSIONS
from synapse.config.database import DatabaseConnectionConfig
from synapse.events import EventBase, make_event_from_dict
from synapse.module_api import ModuleApi
from synapse.storage.database import LoggingDatabaseConnection, make_conn
from synapse.storage.engines import create_engine
from twisted.internet.defer import Deferred, ensureDeferred

from appliance.synapse_module.accounts.domain_store import DomainStore
from appliance.synapse_module.config import InvitationLimits
from appliance.synapse_module.externals.identity_key import IdentityKey
from appliance.synapse_module.externals.invitation_mail import InvitationMail
from appliance.synapse_module.externals.invitations import Invitations
from appliance.synapse_module.externals.policy import ExternalDirectory
from appliance.synapse_module.externals.store import ExternalStore

SERVER = "appliance.test"
_SQLITE = {"name": "sqlite3", "args": {"database": ":memory:"}}
_ENGINE = create_engine(_SQLITE)


def settle(awaitable: Coroutine[Any, Any, Any] | Deferred) -> Any:
    """The result of a coroutine that must finish without waiting (raises what it raised)."""
    deferred = ensureDeferred(awaitable) if not isinstance(awaitable, Deferred) else awaitable
    outcome: list = []
    deferred.addBoth(outcome.append)
    assert outcome, "the callback waited for something that never came"
    if isinstance(outcome[0], BaseException) or hasattr(outcome[0], "raiseException"):
        outcome[0].raiseException()
    return outcome[0]


@pytest.fixture(scope="session")
def synapse_schema() -> sqlite3.Connection:
    """An in-memory database with Synapse's own schema, prepared by Synapse itself."""
    config = DatabaseConnectionConfig("master", _SQLITE)
    connection = make_conn(
        db_config=config, engine=_ENGINE, default_txn_name="schema", server_name=SERVER
    )
    return connection.conn


class SynapseDatabase:
    """Stands for ModuleApi.run_db_interaction: one connection, one transaction per call."""

    def __init__(self, template: sqlite3.Connection) -> None:
        native = sqlite3.connect(":memory:")
        template.backup(native)
        self.connection = LoggingDatabaseConnection(
            conn=native, engine=_ENGINE, default_txn_name="fast", server_name=SERVER
        )
        self.calls: list[str] = []
        self.outage: Exception | None = None  # set: every call fails with it

    async def run_db_interaction(self, desc: str, func: Callable, *args: Any, **kwargs: Any):
        assert func.__name__.endswith("_txn"), f"{func.__name__} runs in a transaction"
        assert desc.startswith("appliance_"), f"desc {desc!r} names the module's method"
        self.calls.append(desc)
        if self.outage is not None:
            raise self.outage
        txn = self.connection.cursor(txn_name=desc)
        try:
            result = func(txn, *args, **kwargs)
        except BaseException:
            self.connection.rollback()
            raise
        self.connection.commit()
        return result

    def rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        """What the database holds, read directly (not through the module)."""
        return self.connection.conn.execute(sql, args).fetchall()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def database(synapse_schema) -> SynapseDatabase:
    return SynapseDatabase(synapse_schema)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def module_api(database: SynapseDatabase, clock: Clock, *, main_process: bool) -> Mock:
    api = Mock(spec=ModuleApi)
    api.server_name = SERVER
    api.public_baseurl = f"https://{SERVER}/"
    api.email_app_name = "Appliance"
    api.worker_app = None if main_process else "synapse.app.generic_worker"
    api.should_run_background_tasks.return_value = main_process
    api.run_db_interaction.side_effect = database.run_db_interaction
    api.get_current_time_msec.side_effect = lambda: int(clock.now * 1000)
    api.run_as_background_process.side_effect = lambda desc, func, *a, **k: ensureDeferred(
        func(*a, **k)
    )
    api.is_mine.side_effect = lambda user_id: str(user_id).endswith(f":{SERVER}")
    api.get_qualified_user_id.side_effect = lambda localpart: f"@{localpart}:{SERVER}"
    api.users = set()  # the accounts that exist, for check_user_exists
    api.admins = set()  # the server admins, for is_user_admin
    api.rooms = {}  # room ID -> RoomBuilder, for get_room_state

    # (AsyncMock awaits a side effect only when it is itself a coroutine function.)
    async def check_user_exists(user_id: str) -> str | None:
        return user_id if user_id in api.users else None

    async def is_user_admin(user_id: str) -> bool:
        return user_id in api.admins

    async def get_room_state(room_id: str, event_filter=None) -> dict:
        state = api.rooms[room_id].state
        if event_filter is None:
            return dict(state)
        return {key: state[key] for key in event_filter if key in state}

    api.check_user_exists.side_effect = check_user_exists
    api.is_user_admin.side_effect = is_user_admin
    api.get_room_state.side_effect = get_room_state
    api.get_threepids_for_user.return_value = []
    api.read_templates.return_value = [Mock(), Mock(), Mock()]
    api.public_room_list_manager.room_is_in_public_room_list = AsyncMock(return_value=False)
    return api


@pytest.fixture
def api(database, clock) -> Mock:
    """The module API of the main process (the one that creates the module's tables)."""
    return module_api(database, clock, main_process=True)


@pytest.fixture
def worker_api(database, clock) -> Mock:
    """The module API of a worker on the same database: it never creates tables."""
    return module_api(database, clock, main_process=False)


_timestamps = itertools.count(1_700_000_000_000)


class RoomBuilder:
    """Real Synapse events of one room, and its state map as Synapse hands it to callbacks."""

    def __init__(self, version: str = "12", creator: str = f"@creator:{SERVER}") -> None:
        self.version = KNOWN_ROOM_VERSIONS[version]
        self.creator = creator
        self.depth = 0
        self.room_id = f"!room:{SERVER}"
        create = self.event("m.room.create", "", {"room_version": version}, sender=creator)
        self.room_id = create.room_id
        self.state: dict[tuple[str, str], EventBase] = {("m.room.create", ""): create}

    def event(
        self, event_type: str, state_key: str | None, content: dict, *, sender: str | None = None
    ) -> EventBase:
        self.depth += 1
        fields: dict = {
            "type": event_type,
            "sender": sender or self.creator,
            "content": content,
            "auth_events": [],
            "prev_events": [],
            "depth": self.depth,
            "origin_server_ts": next(_timestamps),  # distinct rooms get distinct room IDs
            "hashes": {"sha256": "unchecked"},
            "signatures": {},
        }
        if state_key is not None:
            fields["state_key"] = state_key
        if not (event_type == "m.room.create" and self.version.identifier == "12"):
            fields["room_id"] = self.room_id  # from v12 the create event's hash is the room ID
        return make_event_from_dict(fields, self.version)

    def add(self, event_type: str, state_key: str, content: dict, **kwargs) -> RoomBuilder:
        self.state[(event_type, state_key)] = self.event(event_type, state_key, content, **kwargs)
        return self


@pytest.fixture
def room(api) -> Callable[..., RoomBuilder]:
    """Make a room that the module API's get_room_state knows."""

    def make(*args, **kwargs) -> RoomBuilder:
        built = RoomBuilder(*args, **kwargs)
        api.rooms[built.room_id] = built
        return built

    return make


# The module's own parts, real, on the fast database --------------------------------------------


@pytest.fixture
def allowlist(api, clock) -> DomainStore:
    """The allowlist store of the main process, seeded with ac-paris.fr and *.gouv.fr."""
    store = DomainStore(api, ("ac-paris.fr", "*.gouv.fr"), clock=clock)
    store.start()
    return store


@pytest.fixture
def externals(api) -> ExternalStore:
    store = ExternalStore(api)
    store.start()
    return store


@pytest.fixture
def directory(api, externals) -> ExternalDirectory:
    return ExternalDirectory(api, externals)


@pytest.fixture
def key(api) -> IdentityKey:
    identity_key = IdentityKey(api)
    settle(identity_key.load())
    return identity_key


@pytest.fixture
def invitations(api, externals, directory, allowlist, key) -> Invitations:
    return Invitations(
        api, externals, directory, allowlist.current, key, InvitationMail(api), InvitationLimits()
    )


@pytest.fixture
def run() -> Callable[[Any], Any]:
    return settle
