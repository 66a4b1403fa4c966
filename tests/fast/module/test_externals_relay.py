# SPDX-License-Identifier: AGPL-3.0-or-later
"""An unknown address invited on the network's externals' server, in the fast tier: which
addresses go there (federation/externals_relay.py), what the relay sends and how it passes on
that server's answers and refusals, and the signed ``3pid/onbind`` request the externals' server
sends back (federation/onbind.py), checked as Synapse checks it.  The other server's HTTP
answers stand for ``ModuleApi.http_client``; Synapse's federation client stands for itself by
the names the module reaches (synapse_internals.py, reach 17).  The real exchange between three
servers: tests/test_federation_externals_invites.py."""

from __future__ import annotations

import json
from unittest.mock import AsyncMock, Mock

import pytest
from signedjson.key import decode_verify_key_bytes
from signedjson.sign import verify_signed_json
from synapse.module_api.errors import ConfigError, SynapseError
from unpaddedbase64 import decode_base64

from appliance.addresses.email_address import parse_email
from appliance.synapse_module.config import InvitationLimits, parse_module_config
from appliance.synapse_module.externals.invitation_mail import InvitationMail
from appliance.synapse_module.externals.invitations import INVITED_BY_ROOM_SERVER, Invitations
from appliance.synapse_module.externals.relayed_invitations import (
    NOT_THE_EXTERNALS_SERVER,
    ONLY_AGENTS_OF_PEERS,
    RelayedInvitations,
)
from appliance.synapse_module.externals.store import Invitation
from appliance.synapse_module.federation import externals_relay
from appliance.synapse_module.federation.externals_relay import UNREACHABLE, ExternalsRelay
from appliance.synapse_module.federation.onbind import OnBind
from appliance.synapse_module.federation.peers import FederationConfig, Network, Peer
from appliance.synapse_module.synapse_internals import HttpResponseException, SynapseInternals

SERVER = "appliance.test"  # the fast tier's module API (conftest.py)

EXTERNALS = Peer("e.test", "externals", "https://e.test/")
LYON = Peer("lyon.test", "agents", "https://lyon.test/", ("ac-lyon.fr",))
ALICE = f"@alice-ac-paris.fr:{SERVER}"
PAUL = parse_email("paul@gmail.example")
STORED = {
    "token": "tok",
    "public_keys": [{"public_key": "E-KEY", "key_validity_url": "https://e.test/isvalid"}],
    "public_key": "E-KEY",
    "display_name": "p...@gmail.example",
}


@pytest.fixture
def federation(api) -> Mock:
    """Synapse's federation HTTP client, by the names the module reaches."""
    hs = Mock()
    api._hs = hs
    return hs.get_federation_http_client.return_value


@pytest.fixture
def http(api) -> Mock:
    """The externals' server, as ModuleApi.http_client reaches it."""
    api.http_client = Mock()
    api.http_client.post_json_get_json = AsyncMock()
    return api.http_client


def relay_for(api, allowlist, peers=(LYON, EXTERNALS)) -> ExternalsRelay:
    network = Network(FederationConfig(mode="closed", peers=tuple(peers)), SERVER)
    return ExternalsRelay(api, network, allowlist.current, SynapseInternals(api))


def refusal_of(code: int, body: dict) -> HttpResponseException:
    return HttpResponseException(code, "refused", json.dumps(body).encode())


def test_only_addresses_of_no_domain_of_the_network_go_to_the_externals_server(
    api, allowlist, federation
):
    relay = relay_for(api, allowlist)
    assert relay.server_for(PAUL) == EXTERNALS
    assert relay.server_for(parse_email("anne@ac-paris.fr")) is None  # this server's own
    assert relay.server_for(parse_email("marc@ac-lyon.fr")) is None  # the agents peer's
    assert relay_for(api, allowlist, peers=(LYON,)).server_for(PAUL) is None  # none: here


def test_the_relay_registers_with_an_openid_token_then_stores_the_invitation(
    run, api, allowlist, federation, http, database
):
    http.post_json_get_json.side_effect = [{"token": "is-token"}, STORED]

    relayed = run(
        relay_for(api, allowlist).store_invite(
            EXTERNALS, inviter=ALICE, email=PAUL, room_id="!r:x", room_name="Projet"
        )
    )

    assert relayed.third_party_invite_content() == {
        "display_name": "p...@gmail.example",
        "public_keys": STORED["public_keys"],
        "key_validity_url": "https://e.test/isvalid",
        "public_key": "E-KEY",
    }
    assert relayed.store_invite_answer()["token"] == "tok"
    (register_url, register), (store_url, store) = [
        c.args for c in http.post_json_get_json.await_args_list
    ]
    assert register_url == "https://e.test/_matrix/identity/v2/account/register"
    assert register["matrix_server_name"] == SERVER
    # The OpenID token is the inviter's, in Synapse's table, as /openid/request_token makes it.
    rows = database.rows(
        "SELECT user_id FROM open_id_tokens WHERE token = ?", (register["access_token"],)
    )
    assert rows == [(ALICE,)]
    assert store_url == "https://e.test/_matrix/identity/v2/store-invite"
    assert store == {
        "medium": "email",
        "address": PAUL.address,
        "room_id": "!r:x",
        "sender": ALICE,
        "room_name": "Projet",
    }
    headers = http.post_json_get_json.await_args_list[1].kwargs["headers"]
    assert headers == {"Authorization": ["Bearer is-token"]}


def test_the_externals_servers_refusals_reach_the_inviter(run, api, allowlist, federation, http):
    limited = {"errcode": "M_LIMIT_EXCEEDED", "error": "Too many", "retry_after_ms": 1500}
    http.post_json_get_json.side_effect = [{"token": "t"}, refusal_of(429, limited)]

    with pytest.raises(SynapseError) as refused:
        run(
            relay_for(api, allowlist).store_invite(
                EXTERNALS, inviter=ALICE, email=PAUL, room_id="!r"
            )
        )

    assert (refused.value.code, refused.value.errcode) == (429, "M_LIMIT_EXCEEDED")
    assert "e.test" in refused.value.msg and "Too many" in refused.value.msg
    assert refused.value.error_dict(None)["retry_after_ms"] == 1500


def test_an_address_with_an_account_there_comes_back_as_that_account(
    run, api, allowlist, federation, http
):
    in_use = {"errcode": "M_THREEPID_IN_USE", "error": "in use", "mxid": "@paul:e.test"}
    http.post_json_get_json.side_effect = [{"token": "t"}, refusal_of(400, in_use)]

    relayed = run(
        relay_for(api, allowlist).store_invite(EXTERNALS, inviter=ALICE, email=PAUL, room_id="!r")
    )

    assert (relayed.existing, relayed.token) == ("@paul:e.test", None)


@pytest.mark.parametrize(
    "answer",
    [
        ConnectionRefusedError("down"),
        refusal_of(500, {"errcode": "M_UNKNOWN", "error": "boom"}),
        {"token": "tok"},  # no keys: not an invitation, nothing goes into the room
        refusal_of(400, {"errcode": "M_THREEPID_IN_USE", "mxid": "@paul:lyon.test"}),
    ],
)
def test_an_externals_server_that_does_not_answer_an_invitation_is_a_502(
    run, api, allowlist, federation, http, answer
):
    http.post_json_get_json.side_effect = [{"token": "t"}, answer]

    with pytest.raises(SynapseError) as failed:
        run(
            relay_for(api, allowlist).store_invite(
                EXTERNALS, inviter=ALICE, email=PAUL, room_id="!r"
            )
        )

    assert (failed.value.code, failed.value.msg) == (502, UNREACHABLE.format(server="e.test"))


def test_the_onbind_request_is_signed_as_synapse_checks_it(run, api, key, federation):
    federation.post_json = AsyncMock(return_value={})
    invitation = Invitation("tok", "link", PAUL.address, "!r:lyon.test", "@marc:lyon.test", 1)
    onbind = OnBind(key, SynapseInternals(api))

    outcome = run(onbind.exchange(invitation, f"@paul:{SERVER}"))

    assert outcome == INVITED_BY_ROOM_SERVER
    destination, path = federation.post_json.await_args.args
    assert (destination, path) == ("lyon.test", "/_matrix/federation/v1/3pid/onbind")
    (invite,) = federation.post_json.await_args.kwargs["data"]["invites"]
    assert (invite["room_id"], invite["sender"], invite["mxid"]) == (
        "!r:lyon.test",
        "@marc:lyon.test",
        f"@paul:{SERVER}",
    )
    signed = invite["signed"]
    assert (signed["mxid"], signed["token"]) == (f"@paul:{SERVER}", "tok")
    # What Synapse's exchange does with the key of the room's m.room.third_party_invite.
    for server, block in signed["signatures"].items():
        for key_name in block:
            verify_key = decode_verify_key_bytes(key_name, decode_base64(key.public_key))
            verify_signed_json(signed, server, verify_key)


def test_an_inviting_server_that_cannot_be_told_is_the_invitations_outcome(
    run, api, key, federation
):
    federation.post_json = AsyncMock(side_effect=ConnectionRefusedError("down"))
    invitation = Invitation("tok", "link", PAUL.address, "!r:lyon.test", "@marc:lyon.test", 1)

    outcome = run(OnBind(key, SynapseInternals(api)).exchange(invitation, f"@paul:{SERVER}"))

    assert outcome.startswith("failed: lyon.test could not be told")


def test_an_externals_peer_without_its_base_url_is_a_config_error():
    peers = [{"server_name": "e.test", "role": "externals"}]
    with pytest.raises(ConfigError) as error:
        parse_module_config({"federation": {"mode": "closed", "peers": peers}})
    assert tuple(error.value.path) == ("federation", "peers", "0", "base_url")
    assert "identity service" in error.value.msg


def test_an_invitation_into_a_peers_room_waits_here_and_is_completed_by_onbind(
    run, api, externals, directory, allowlist, key
):
    # The externals' server is not in the room: the invitation lets its address register
    # until used, and its completion is the exchange (3pid/onbind), not a join here.
    exchange = AsyncMock(return_value=INVITED_BY_ROOM_SERVER)
    invitations = Invitations(
        api,
        externals,
        directory,
        allowlist.current,
        key,
        InvitationMail(api),
        InvitationLimits(),
        exchange=exchange,
    )
    relayed = Invitation("tok", "link", PAUL.address, "!r:lyon.test", "@marc:lyon.test", 1)
    assert run(externals.add_within(relayed, ())) == relayed

    assert run(invitations.standing(PAUL.address))
    assert run(invitations.pending(PAUL.address, "!r:lyon.test")) == relayed
    run(invitations.complete_for(f"@paul:{SERVER}", PAUL.address))

    exchange.assert_awaited_once_with(relayed, f"@paul:{SERVER}")
    used = run(externals.by_token("tok"))
    assert (used.user_id, used.outcome) == (f"@paul:{SERVER}", INVITED_BY_ROOM_SERVER)
    assert not run(invitations.standing(PAUL.address))


def test_only_the_networks_externals_server_stores_invitations_for_other_servers(api, invitations):
    # A server that lists an externals' server sends its unknown addresses there.
    with_externals = Network(FederationConfig(mode="closed", peers=(LYON, EXTERNALS)), SERVER)
    with pytest.raises(SynapseError) as refused:
        RelayedInvitations(api, invitations, with_externals).check_sender("@marc:lyon.test")
    assert refused.value.msg == NOT_THE_EXTERNALS_SERVER.format(server="e.test")
    externals_server = Network(FederationConfig(mode="closed", peers=(LYON,)), SERVER)
    RelayedInvitations(api, invitations, externals_server).check_sender("@marc:lyon.test")
    with pytest.raises(SynapseError) as refused:
        RelayedInvitations(api, invitations, externals_server).check_sender("@x:other.test")
    assert refused.value.msg == ONLY_AGENTS_OF_PEERS


def test_the_externals_servers_key_is_fetched_once_and_missing_when_it_cannot_be(
    run, api, allowlist, federation, http, monkeypatch
):
    now = [1000.0]
    monkeypatch.setattr(externals_relay.time, "monotonic", lambda: now[0])
    http.get_json = AsyncMock(
        side_effect=[ConnectionRefusedError("down"), {"public_key": "K"}, {"public_key": "K2"}]
    )
    relay = relay_for(api, allowlist)

    assert run(relay.accepted_keys({"K"})) == frozenset()  # fail closed: its events are refused
    # While it is down, events do not each wait on it: asked again a minute later only.
    assert run(relay.accepted_keys({"K"})) == frozenset()
    assert http.get_json.await_count == 1
    now[0] += externals_relay.KEY_RETRY_SECONDS
    assert run(relay.accepted_keys({"K"})) == {"K"}
    assert run(relay.accepted_keys({"K"})) == {"K"}  # kept
    assert http.get_json.await_count == 2
    assert http.get_json.await_args.args == ("https://e.test/_matrix/identity/v2/pubkey/ed25519:0",)
    # An event naming another key (the externals' server reinstalled): asked again, once.
    assert run(relay.accepted_keys({"K2"})) == {"K2"}
    assert http.get_json.await_count == 3
