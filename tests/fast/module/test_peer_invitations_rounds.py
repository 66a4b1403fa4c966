# SPDX-License-Identifier: AGPL-3.0-or-later
"""The rounds that complete invitations of peers' addresses (externals/invitations.py
``complete_on_peers``, run by federation/peer_invitations.py): every pending invitation is
looked at, however many externals' invitations are newer; only those of a peer's domain are
asked of the peer; one older than the invitation lifetime is withdrawn instead; a peer that
cannot be asked is asked once a round.  The peer's federation client stands for Synapse's by
the names the module reaches (synapse_internals.py, reach 11)."""

from __future__ import annotations

from unittest.mock import AsyncMock, Mock

import pytest

from appliance.synapse_module.config import InvitationLimits
from appliance.synapse_module.externals.invitation_mail import InvitationMail
from appliance.synapse_module.externals.invitations import (
    DAY_MS,
    PEER_INVITATION_DAYS,
    PEER_INVITATION_EXPIRED,
    PEER_PAGE,
    Invitations,
)
from appliance.synapse_module.externals.store import Invitation
from appliance.synapse_module.federation.peer_accounts import PeerAccounts
from appliance.synapse_module.federation.peers import FederationConfig, Network, Peer
from appliance.synapse_module.synapse_internals import SynapseInternals

LYON = Peer("lyon.test", "agents", "https://lyon.test/", ("ac-lyon.fr",))
INVITER = "@anne-ac-paris.fr:appliance.test"


@pytest.fixture
def make_query(api) -> AsyncMock:
    """The federation client's queries, as Synapse's FederationClient.make_query."""
    hs = Mock()
    hs.get_federation_client.return_value.make_query = AsyncMock(return_value={"user_id": None})
    api._hs = hs
    return hs.get_federation_client.return_value.make_query


@pytest.fixture
def rounds(api, clock, externals, directory, allowlist, key, make_query) -> Invitations:
    clock.now = 100 * DAY_MS / 1000  # day 100
    network = Network(FederationConfig(mode="closed", peers=(LYON,)), api.server_name)
    accounts = PeerAccounts(api, network, allowlist.current, SynapseInternals(api))
    return Invitations(
        api,
        externals,
        directory,
        allowlist.current,
        key,
        InvitationMail(api),
        InvitationLimits(),
        network=network,
        peer_accounts=accounts,
    )


def invite(run, externals, address: str, created_at: int, n: int) -> Invitation:
    invitation = Invitation(f"t{n}", f"l{n}", address, f"!r{n}:appliance.test", INVITER, created_at)
    assert run(externals.add_within(invitation, ())) == invitation
    return invitation


def asked(make_query: AsyncMock) -> list[str]:
    return [call.args[2]["address"] for call in make_query.await_args_list]


def test_every_pending_peer_invitation_is_asked_and_old_ones_expire(
    run, api, externals, rounds, make_query
):
    now = api.get_current_time_msec()
    lifetime = PEER_INVITATION_DAYS * DAY_MS
    # Older than more than two pages of newer externals' invitations: never asked before.
    waiting = [
        invite(run, externals, f"p{n}@ac-lyon.fr", now - 2 * DAY_MS + n, n) for n in range(3)
    ]
    old = invite(run, externals, "old@ac-lyon.fr", now - lifetime - 1, 3)
    for n in range(2 * PEER_PAGE + 5):
        invite(run, externals, f"x{n}@gmail.com", now - DAY_MS + n, 100 + n)
    run(rounds.complete_on_peers())
    assert sorted(asked(make_query)) == sorted(i.address for i in waiting)
    for invitation in waiting:
        assert run(externals.by_token(invitation.token)).pending
    expired = run(externals.by_token(old.token))
    assert not expired.pending
    assert expired.outcome == PEER_INVITATION_EXPIRED.format(
        server=LYON.server_name, days=PEER_INVITATION_DAYS
    )
    # Next round: the expired one stays withdrawn, the others are asked again.
    run(rounds.complete_on_peers())
    assert len(asked(make_query)) == 2 * len(waiting)


def test_a_peer_that_cannot_be_asked_is_asked_once_a_round(run, api, externals, rounds, make_query):
    make_query.side_effect = ConnectionRefusedError("down")
    now = api.get_current_time_msec()
    for n in range(5):
        invite(run, externals, f"p{n}@ac-lyon.fr", now - n, n)
    run(rounds.complete_on_peers())
    assert make_query.await_count == 1
    assert all(i.pending for i in run(externals.page(True, None, 10)))
