# SPDX-License-Identifier: AGPL-3.0-or-later
"""The bounds on what this server asks its peers (federation/peer_accounts.py,
peer_directory.py, peer_query_limit.py): an account look-up ends by its request's deadline
however long Synapse's federation client would retry; a peer's answer is reused for a while;
each user's requests may cause only so many peer queries (429 ``M_LIMIT_EXCEEDED``); a
directory search asks every agents peer at once and waits for them at most one period.

Time is Twisted's test clock (``twisted.internet.task.Clock``), advanced by the test: nothing
sleeps.  Synapse's federation client stands for the real one by the names the module reaches
(synapse_internals.py, reach 11)."""

from __future__ import annotations

from unittest.mock import AsyncMock, Mock

import pytest
from synapse.module_api.errors import SynapseError
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock

from appliance.synapse_module.federation.peer_accounts import (
    CACHE_SECONDS,
    QUERY_SECONDS,
    TOO_MANY_QUERIES,
    USER_QUERIES_PER_MINUTE,
    PeerAccounts,
)
from appliance.synapse_module.federation.peer_directory import (
    PEER_SEARCH_SECONDS,
    USER_SEARCHES_PER_MINUTE,
    PeerDirectory,
)
from appliance.synapse_module.federation.peers import FederationConfig, Network, Peer
from appliance.synapse_module.synapse_internals import SynapseInternals

LYON = Peer("lyon.test", "agents", "https://lyon.test/", ("ac-lyon.fr",))
NANTES = Peer("nantes.test", "agents", "https://nantes.test/", ("ac-nantes.fr",))
AGENT = "@anne-ac-paris.fr:appliance.test"
OTHER = "@paul-ac-paris.fr:appliance.test"


class Peers:
    """Synapse's federation client: each query waits until the test answers it."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, dict, Deferred]] = []

    async def make_query(self, destination: str, query_type: str, args: dict) -> dict:
        answered: Deferred = Deferred()
        self.asked.append((destination, args, answered))
        return await answered

    def answer_all(self, answer_of) -> None:
        for destination, args, answered in self.asked:
            if not answered.called:
                answered.callback(answer_of(destination, args))


@pytest.fixture
def reactor_clock() -> Clock:
    return Clock()


@pytest.fixture
def peers(api) -> Peers:
    found = Peers()
    hs = Mock()
    hs.get_federation_client.return_value.make_query = found.make_query
    api._hs = hs
    return found


@pytest.fixture
def accounts(api, allowlist, peers, reactor_clock) -> PeerAccounts:
    network = Network(FederationConfig(mode="closed", peers=(LYON,)), api.server_name)
    return PeerAccounts(api, network, allowlist.current, SynapseInternals(api), clock=reactor_clock)


def no_account(destination: str, args: dict) -> dict:
    return {"user_id": None}


def test_an_account_query_ends_by_its_deadline(accounts, peers, reactor_clock):
    asking = ensureDeferred(accounts.account_at(LYON, "bob@ac-lyon.fr", asker=AGENT))
    assert len(peers.asked) == 1 and not asking.called
    reactor_clock.advance(QUERY_SECONDS - 0.5)
    assert not asking.called
    reactor_clock.advance(0.5)
    failures: list = []
    asking.addErrback(failures.append)
    assert failures, "the query outlived its deadline"
    error = failures[0].value
    assert isinstance(error, SynapseError) and (error.code, error.errcode) == (502, "M_UNKNOWN")


def test_queries_of_one_request_share_its_deadline(accounts, peers, reactor_clock):
    deadline = accounts.deadline()
    first = ensureDeferred(accounts.account_at(LYON, "a@ac-lyon.fr", deadline=deadline))
    reactor_clock.advance(QUERY_SECONDS - 1)
    second = ensureDeferred(accounts.account_at(LYON, "b@ac-lyon.fr", deadline=deadline))
    reactor_clock.advance(1)
    assert first.called and second.called  # both failed at the one deadline
    first.addErrback(lambda _: None)
    second.addErrback(lambda _: None)


def test_an_answer_is_reused_for_a_while_then_asked_again(accounts, peers, reactor_clock, run):
    peers.answer_all(no_account)
    asking = ensureDeferred(accounts.account_at(LYON, "bob@ac-lyon.fr", asker=AGENT))
    peers.answer_all(lambda d, a: {"user_id": "@bob-ac-lyon.fr:lyon.test"})
    assert run(asking) == "@bob-ac-lyon.fr:lyon.test"
    assert run(accounts.account_at(LYON, "bob@ac-lyon.fr", asker=AGENT)) == (
        "@bob-ac-lyon.fr:lyon.test"
    )
    assert len(peers.asked) == 1
    reactor_clock.advance(CACHE_SECONDS + 1)
    again = ensureDeferred(accounts.account_at(LYON, "bob@ac-lyon.fr", asker=AGENT))
    assert len(peers.asked) == 2
    peers.answer_all(no_account)
    assert run(again) is None
    # The background rounds ask afresh, cache or not.
    fresh = ensureDeferred(accounts.account_at(LYON, "bob@ac-lyon.fr", fresh=True))
    assert len(peers.asked) == 3
    peers.answer_all(no_account)
    assert run(fresh) is None


def test_each_user_may_cause_only_so_many_peer_queries(accounts, peers, reactor_clock, run):
    for n in range(USER_QUERIES_PER_MINUTE):
        asking = ensureDeferred(accounts.account_at(LYON, f"p{n}@ac-lyon.fr", asker=AGENT))
        peers.answer_all(no_account)
        assert run(asking) is None
    with pytest.raises(SynapseError) as refused:
        run(accounts.account_at(LYON, "one-more@ac-lyon.fr", asker=AGENT))
    assert (refused.value.code, refused.value.errcode, refused.value.msg) == (
        429,
        "M_LIMIT_EXCEEDED",
        TOO_MANY_QUERIES,
    )
    assert 0 < refused.value.error_dict(None)["retry_after_ms"] <= 60_000
    asked = len(peers.asked)
    # A cached answer costs nothing; another user has their own count; a minute frees them.
    assert run(accounts.account_at(LYON, "p0@ac-lyon.fr", asker=AGENT)) is None
    other = ensureDeferred(accounts.account_at(LYON, "one-more@ac-lyon.fr", asker=OTHER))
    assert len(peers.asked) == asked + 1
    peers.answer_all(no_account)
    assert run(other) is None
    reactor_clock.advance(60)
    later = ensureDeferred(accounts.account_at(LYON, "again@ac-lyon.fr", asker=AGENT))
    peers.answer_all(no_account)
    assert run(later) is None


@pytest.fixture
def searches(api, directory, peers, reactor_clock) -> PeerDirectory:
    hs = api._hs
    hs.get_datastores.return_value.main.search_user_dir = AsyncMock(
        return_value={"limited": False, "results": []}
    )
    api.users.add(AGENT)
    network = Network(FederationConfig(mode="closed", peers=(LYON, NANTES)), api.server_name)
    return PeerDirectory(api, network, directory, SynapseInternals(api), clock=reactor_clock)


def person(destination: str, args: dict) -> dict:
    server = destination
    return {"results": [{"user_id": f"@someone:{server}", "display_name": args["term"]}]}


def test_a_search_asks_every_peer_at_once_and_keeps_the_settings_order(searches, peers, run):
    searching = ensureDeferred(searches.peer_results(AGENT, "marie", 10))
    # Both asked before either answered.
    assert [destination for destination, _, _ in peers.asked] == ["lyon.test", "nantes.test"]
    peers.asked[1][2].callback(person("nantes.test", {"term": "marie"}))
    assert not searching.called
    peers.asked[0][2].callback(person("lyon.test", {"term": "marie"}))
    assert [user["user_id"] for user in run(searching)] == [
        "@someone:lyon.test",
        "@someone:nantes.test",
    ]


def test_a_search_waits_for_silent_peers_one_period_in_all(searches, peers, reactor_clock, run):
    searching = ensureDeferred(searches.peer_results(AGENT, "marie", 10))
    peers.asked[0][2].callback(person("lyon.test", {"term": "marie"}))
    reactor_clock.advance(PEER_SEARCH_SECONDS)
    assert [user["user_id"] for user in run(searching)] == ["@someone:lyon.test"]


def test_past_the_users_limit_a_search_asks_no_peer(searches, peers, run):
    for _ in range(USER_SEARCHES_PER_MINUTE // 2):  # each search asks both peers
        searching = ensureDeferred(searches.peer_results(AGENT, "marie", 10))
        peers.answer_all(person)
        assert len(run(searching)) == 2
    asked = len(peers.asked)
    assert run(searches.peer_results(AGENT, "marie", 10)) == []
    assert len(peers.asked) == asked
