# SPDX-License-Identifier: AGPL-3.0-or-later
"""The directory's callback (directory/user_search.py), as Synapse calls it once per search
result: agents find everyone, an external only the people they share a room with.  Synapse's
store stands for a worker's (only its names exist), answering which rooms each user is in."""

from __future__ import annotations

from unittest.mock import AsyncMock, Mock

import pytest
from synapse.app.generic_worker import GenericWorkerStore

from appliance.synapse_module.directory.user_search import DirectoryFilter
from appliance.synapse_module.externals.policy import ExternalDirectory
from appliance.synapse_module.externals.store import ExternalStore
from appliance.synapse_module.synapse_internals import SynapseInternals

SERVER = "appliance.test"
AGENT, COLLEAGUE = f"@anne-ac-paris.fr:{SERVER}", f"@paul-ac-paris.fr:{SERVER}"
EXTERNAL = f"@jean-gmail.com:{SERVER}"
ROOMS = {AGENT: {"!shared"}, COLLEAGUE: {"!agents-only"}, EXTERNAL: {"!shared"}}


@pytest.fixture
def search_filter(worker_api, worker_directory, run) -> DirectoryFilter:
    store = Mock(spec=dir(GenericWorkerStore))
    store.get_rooms_for_user = AsyncMock(side_effect=lambda user_id: frozenset(ROOMS[user_id]))
    worker_api._hs = Mock()
    worker_api._hs.get_datastores.return_value.main = store
    worker_api.users.update(ROOMS)
    run(worker_directory.record(EXTERNAL, "jean@gmail.com"))
    found = DirectoryFilter(worker_api, worker_directory, SynapseInternals(worker_api))
    found.register()
    return found


def hidden(run, search_filter, found: str, searcher: str) -> bool:
    profile = {"user_id": found, "display_name": None, "avatar_url": None}
    return run(search_filter.check_username_for_spam(profile, searcher))


@pytest.fixture
def worker_directory(worker_api, externals) -> ExternalDirectory:
    # The main process made the externals' tables (the externals fixture); the worker reads.
    return ExternalDirectory(worker_api, ExternalStore(worker_api))


def test_the_filter_registers_synapses_callback(worker_api, search_filter):
    worker_api.register_spam_checker_callbacks.assert_called_once_with(
        check_username_for_spam=search_filter.check_username_for_spam
    )


def test_an_agent_finds_everyone(run, search_filter):
    assert not hidden(run, search_filter, COLLEAGUE, AGENT)
    assert not hidden(run, search_filter, EXTERNAL, AGENT)


def test_an_external_finds_only_room_mates_and_themselves(run, search_filter):
    assert not hidden(run, search_filter, AGENT, EXTERNAL)  # they share !shared
    assert hidden(run, search_filter, COLLEAGUE, EXTERNAL)  # no room in common
    assert not hidden(run, search_filter, EXTERNAL, EXTERNAL)
