# SPDX-License-Identifier: AGPL-3.0-or-later
"""External guests: invited by email, registered through any client, kept to their rooms.

On the shared appliance the invitation goes through the appliance's endpoint (its Synapse
speaks plain HTTP, and Synapse calls identity servers over HTTPS only); the last test runs a
standard client's email invite end to end against a second Synapse with a TLS listener, through
the identity service the module serves on the homeserver itself, with the same limits on
invitation mails and the same reuse of a pending invitation (tests/test_invitation_limits.py
drives the appliance's endpoint); and that service on a Synapse whose module tables are not
created yet answers 503 "try again", never a 500.
"""

from __future__ import annotations

import ipaddress

import pytest
import requests
from console_helpers import self_signed_certificate
from cryptography import x509
from harness import evaluation_settings, free_port
from matrix_helpers import (
    OPEN_TO_EXTERNALS,
    MatrixClient,
    Person,
    SideSynapse,
    plain_text,
    read_maildir,
    refusal,
    wait_for_allowlist,
)

from appliance.config.layout import Layout
from appliance.config.settings import ExternalsSettings
from appliance.synapse_module.externals.invitations import (
    EXTERNALS_CANNOT_INVITE_BY_EMAIL,
    MINUTE_MS,
    TOO_MANY_FROM_YOU_NOW,
)
from appliance.synapse_module.rooms.kinds import ACCESS_RULES
from appliance.synapse_module.rooms.rules import (
    EXTERNAL_NAME,
    EXTERNALS_CANNOT_CREATE,
    EXTERNALS_CANNOT_PUBLISH,
    EXTERNALS_LEVEL,
    EXTERNALS_NO_ALIASES,
    EXTERNALS_NO_FORUMS,
    EXTERNALS_NOT_IN_PRIVATE,
)

INVITE_ISVALID = "/_matrix/identity/v2/pubkey/isvalid"


@pytest.fixture(scope="module")
def host(client) -> Person:
    return Person.register(client, "olivier.hote@ac-paris.fr")


@pytest.fixture(scope="module")
def partners(host) -> str:
    return host.new_room(name="Partenaires", preset="private_chat", initial_state=OPEN_TO_EXTERNALS)


@pytest.fixture(scope="module")
def jane(client, host, partners) -> Person:
    """An external invited into the room open to externals, then registered."""
    assert host.invite_by_email(partners, "jane.doe@example.com").status_code == 200
    return Person.register(client, "jane.doe@example.com")


def third_party_invites(person: Person, room_id: str) -> dict[str, dict]:
    return {
        key: content
        for (event_type, key), content in person.state(room_id).items()
        if event_type == "m.room.third_party_invite"
    }


# --- the invitation and the registration ---------------------------------------------------------


def test_an_invited_external_registers_and_lands_in_the_room(client, host, partners):
    address = "marc.lefebvre@partner.example"
    # Nobody may register with an address of a domain that is not allowed...
    assert client.request_token("register", address).json()["errcode"] == "M_THREEPID_DENIED"

    response = host.invite_by_email(partners, address)

    assert response.status_code == 200, response.text
    assert response.json() == {
        "room_id": partners,
        "email": address,
        "user_id": None,
        "pending": True,
    }
    pending = third_party_invites(host, partners)
    token, content = next(
        (k, c) for k, c in pending.items() if c.get("display_name") == "m...@partner.example"
    )
    key = client.get(INVITE_ISVALID, params={"public_key": content["public_key"]}).json()
    assert key == {"valid": True}
    # ...until an agent invites it: the mail says who invites, where, and links to the steps.
    mail = client.mails_to(address)[-1]
    text = plain_text(mail)
    # Quoted, and its dot a middle dot: no mail client makes a link of what an agent chose.
    assert "« Olivier Hote [ac-paris·fr] »" in text and "« Partenaires »" in text
    link = next(line for line in text.split() if "/_synapse/client/appliance/v1/invitation" in line)
    page = requests.get(link, timeout=30)
    assert page.status_code == 200 and address in page.text and "Partenaires" in page.text

    marc = Person.register(client, address)

    assert (
        client.display_name(marc.user_id, token=marc.token)
        == "Marc Lefebvre [partner.example] (external)"
    )
    assert partners in marc.joined_rooms()
    assert marc.user_id in host.joined_members(partners)
    assert third_party_invites(host, partners)[token] == {}  # the pending invite is revoked
    assert marc.send_text(partners, "Bonjour à tous").status_code == 200
    assert "already been used" in requests.get(link, timeout=30).text


def test_an_invitation_of_an_address_not_allowed_needs_a_room_open_to_externals(client, host):
    private = host.new_room(preset="private_chat")

    response = host.invite_by_email(private, "paul@elsewhere.example")

    assert "Only a room open to externals" in refusal(response)
    assert "elsewhere.example" in refusal(response)
    assert client.mails_to("paul@elsewhere.example") == []
    assert third_party_invites(host, private) == {}


def test_an_allowed_address_may_be_invited_anywhere_and_joins_as_an_agent(client, host):
    forum = host.new_room(name="Forum RH", preset="public_chat")
    address = "lea.martin@ac-paris.fr"

    assert host.invite_by_email(forum, address).status_code == 200
    lea = Person.register(client, address)

    assert forum in lea.joined_rooms()
    assert client.display_name(lea.user_id, token=lea.token) == "Lea Martin [ac-paris.fr]"


def test_an_address_with_an_account_gets_an_ordinary_invite(client, host, jane):
    room = host.new_room(preset="private_chat", initial_state=OPEN_TO_EXTERNALS)

    response = host.invite_by_email(room, "Jane.Doe@example.com")

    assert response.status_code == 200, response.text
    assert response.json()["user_id"] == jane.user_id and response.json()["pending"] is False
    assert host.state(room)[("m.room.member", jane.user_id)]["membership"] == "invite"
    assert third_party_invites(host, room) == {}


def test_a_revoked_invitation_no_longer_opens_registration(client, host, partners):
    address = "revoked@partner.example"
    assert host.invite_by_email(partners, address).status_code == 200
    token = next(
        k
        for k, c in third_party_invites(host, partners).items()
        if c.get("display_name") == "r...@partner.example"
    )
    assert client.request_token("register", address).status_code == 200

    assert host.put_state(partners, "m.room.third_party_invite", {}, token).status_code == 200

    assert client.request_token("register", address).json()["errcode"] == "M_THREEPID_DENIED"


def test_an_agent_may_start_a_direct_chat_with_an_external(host, jane):
    room = host.new_room(is_direct=True, preset="trusted_private_chat", invite=[jane.user_id])

    state = host.state(room)
    assert state[(ACCESS_RULES, "")]["rule"] == "direct"
    # The external is no creator of the chat (that would give unlimited power).
    assert jane.user_id not in state[("m.room.create", "")].get("additional_creators", [])
    assert jane.join(room).status_code == 200


# --- what an external may not do ------------------------------------------------------------------


def test_an_external_cannot_create_rooms_or_direct_chats(host, jane):
    before = jane.joined_rooms()

    assert refusal(jane.create_room(name="Mine")) == EXTERNALS_CANNOT_CREATE
    assert (
        refusal(jane.create_room(is_direct=True, invite=[host.user_id])) == EXTERNALS_CANNOT_CREATE
    )
    assert jane.joined_rooms() == before


def test_an_external_cannot_join_a_forum_by_alias_or_link(host, jane):
    alias_name = "forum-achats-externes"
    forum = host.new_room(name="Achats", preset="public_chat", room_alias_name=alias_name)
    alias = f"#{alias_name}:{host.user_id.split(':', 1)[1]}"

    assert refusal(jane.join(alias)) == EXTERNALS_NO_FORUMS
    assert refusal(jane.join(forum)) == EXTERNALS_NO_FORUMS
    assert refusal(host.invite(forum, jane.user_id)) == EXTERNALS_NO_FORUMS
    assert jane.user_id not in host.joined_members(forum)


def test_an_external_cannot_be_invited_into_a_private_room(host, jane):
    room = host.new_room(preset="private_chat")

    assert refusal(host.invite(room, jane.user_id)) == EXTERNALS_NOT_IN_PRIVATE
    before = host.joined_rooms()
    assert refusal(host.create_room(invite=[jane.user_id])) == EXTERNALS_NOT_IN_PRIVATE
    assert host.joined_rooms() == before


def test_an_external_cannot_publish_anything(host, jane, partners):
    assert refusal(jane.publish(partners)) == EXTERNALS_CANNOT_PUBLISH
    server = host.user_id.split(":", 1)[1]
    assert refusal(jane.set_alias(f"#jane-partners:{server}", partners)) == EXTERNALS_NO_ALIASES


def test_an_external_keeps_power_level_zero(host, jane, partners):
    levels = host.state(partners)[("m.room.power_levels", "")]
    raised = {**levels, "users": {**levels["users"], jane.user_id: 50}}

    assert refusal(host.put_state(partners, "m.room.power_levels", raised)) == EXTERNALS_LEVEL
    assert jane.user_id not in host.state(partners)[("m.room.power_levels", "")]["users"]


def test_an_external_cannot_invite_by_email(jane, partners):
    response = jane.invite_by_email(partners, "friend@example.com")

    assert refusal(response) == EXTERNALS_CANNOT_INVITE_BY_EMAIL


SET_NAME_OFF = "Changing display name is disabled on this server"  # Synapse's message


def test_an_external_keeps_the_marker_in_every_name(client, jane, partners):
    path = f"/_matrix/client/v3/profile/{jane.user_id}/displayname"
    # Synapse's own endpoint is off (enable_set_displayname); see tests/test_names.py.
    assert refusal(jane.call("PUT", path, {"displayname": "Jane the Director"})) == SET_NAME_OFF

    assert (
        client.display_name(jane.user_id, token=jane.token) == "Jane Doe [example.com] (external)"
    )
    member = {"membership": "join", "displayname": "Directrice [ac-paris.fr]"}
    assert refusal(jane.put_state(partners, "m.room.member", member, jane.user_id)) == EXTERNAL_NAME


# --- a standard client's email invite, through the module's identity service -------------------


@pytest.fixture(scope="module")
def tls_synapse(tmp_path_factory):
    """A Synapse with the module and a TLS listener, which is how it reaches the identity
    service it serves itself (Synapse calls identity servers over HTTPS only). The test
    certificate is self-signed, hence Synapse's testing-only switch to skip its check."""
    state_dir = tmp_path_factory.mktemp("tls-synapse")
    tls_port = free_port()
    loopback = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
    cert, key = self_signed_certificate(state_dir, 1, [loopback])
    public_baseurl = f"https://127.0.0.1:{tls_port}/"

    def with_tls_listener(config: dict) -> None:
        config["listeners"].append({**config["listeners"][0], "port": tls_port, "tls": True})
        config.update(
            tls_certificate_path=str(cert),
            tls_private_key_path=str(key),
            use_insecure_ssl_client_just_for_testing_do_not_use=True,
            ip_range_whitelist=["127.0.0.1/32"],
        )

    settings = evaluation_settings(state_dir, public_baseurl=public_baseurl)
    layout = Layout.from_settings(settings, state_dir)
    with SideSynapse(settings, layout, edit_config=with_tls_listener):
        http = requests.Session()
        http.trust_env = False  # a CA bundle from the environment would replace ours
        http.verify = str(cert)
        client = MatrixClient(public_baseurl, layout.mail_dir, http)
        wait_for_allowlist(client)
        yield client, f"127.0.0.1:{tls_port}"


def email_invite(client: MatrixClient, id_server: str, host: Person, address: str) -> dict:
    """What Element does to invite by email: an OpenID token from the homeserver buys a token
    of the identity service, which goes into the invite with the identity server's name."""
    openid = host.call("POST", f"/_matrix/client/v3/user/{host.user_id}/openid/request_token", {})
    registered = client.post("/_matrix/identity/v2/account/register", openid.json())
    assert registered.status_code == 200, registered.text
    token = registered.json()["token"]
    return {"id_server": id_server, "id_access_token": token, "medium": "email", "address": address}


def test_a_standard_client_invites_by_email_through_the_servers_identity_service(tls_synapse):
    client, id_server = tls_synapse
    well_known = client.get("/.well-known/matrix/client").json()
    assert well_known["m.identity_server"]["base_url"] == client.base_url + "/"
    assert client.get("/_matrix/identity/v2/terms").json() == {"policies": {}}
    host = Person.register(client, "ines.hote@ac-paris.fr")
    room = host.new_room(name="Projet", preset="private_chat", initial_state=OPEN_TO_EXTERNALS)
    invite = email_invite(client, id_server, host, "sam.partner@example.org")

    response = host.call("POST", f"/_matrix/client/v3/rooms/{room}/invite", invite)

    assert response.status_code == 200, response.text
    pending = third_party_invites(host, room)
    assert [content["display_name"] for content in pending.values()] == ["s...@example.org"]
    sam = Person.register(client, "sam.partner@example.org")
    assert room in sam.joined_rooms()
    assert (
        client.display_name(sam.user_id, token=sam.token) == "Sam Partner [example.org] (external)"
    )
    assert all(content == {} for content in third_party_invites(host, room).values())
    # The lookup maps a registered address to its account: a second invite is an ordinary one.
    other = host.new_room(preset="private_chat", initial_state=OPEN_TO_EXTERNALS)
    again = host.call("POST", f"/_matrix/client/v3/rooms/{other}/invite", invite)
    assert again.status_code == 200, again.text
    assert host.state(other)[("m.room.member", sam.user_id)]["membership"] == "invite"


def test_an_email_invite_refused_by_the_rules_says_why(tls_synapse):
    client, id_server = tls_synapse
    host = Person.register(client, "remi.hote@ac-paris.fr")
    private = host.new_room(preset="private_chat")
    invite = email_invite(client, id_server, host, "nobody@example.org")

    response = host.call("POST", f"/_matrix/client/v3/rooms/{private}/invite", invite)

    assert "Only a room open to externals" in refusal(response)
    assert client.mails_to("nobody@example.org") == []


def test_a_standard_clients_email_invite_twice_into_a_room_mails_once(tls_synapse):
    client, id_server = tls_synapse
    host = Person.register(client, "yves.hote@ac-paris.fr")
    room = host.new_room(preset="private_chat", initial_state=OPEN_TO_EXTERNALS)
    invite = email_invite(client, id_server, host, "twice@example.org")
    path = f"/_matrix/client/v3/rooms/{room}/invite"

    answers = [host.call("POST", path, invite) for _ in range(2)]

    assert [a.status_code for a in answers] == [200, 200], answers[1].text
    assert len(client.mails_to("twice@example.org")) == 1
    # Synapse wrote the room event again with the token store-invite gave back: still one.
    assert [c["display_name"] for c in third_party_invites(host, room).values() if c] == [
        "t...@example.org"
    ]


def test_a_standard_client_looping_on_email_invites_gets_429_and_no_more_mails(tls_synapse):
    client, id_server = tls_synapse
    host = Person.register(client, "zoe.boucle@ac-paris.fr")
    room = host.new_room(preset="private_chat", initial_state=OPEN_TO_EXTERNALS)
    invite = email_invite(client, id_server, host, "unused@example.org")
    limit = ExternalsSettings().invitations_per_inviter_per_minute  # the side Synapse's
    path = f"/_matrix/client/v3/rooms/{room}/invite"

    answers = [
        host.call("POST", path, {**invite, "address": f"flood-{n}@example.org"})
        for n in range(limit + 5)
    ]

    assert [a.status_code for a in answers[:limit]] == [200] * limit, answers[limit - 1].text
    for answer in answers[limit:]:
        assert answer.status_code == 429, answer.text
        assert answer.json()["errcode"] == "M_LIMIT_EXCEEDED"
        assert answer.json()["error"] == TOO_MANY_FROM_YOU_NOW
        assert 0 < answer.json()["retry_after_ms"] <= MINUTE_MS
    mailed = [m for m in read_maildir(client.mail_dir) if "flood-" in (m["To"] or "")]
    assert len(mailed) == limit
    assert len([c for c in third_party_invites(host, room).values() if c]) == limit


def test_before_its_tables_exist_the_identity_service_says_try_again_not_500(
    synapse_without_tables,
):
    side = synapse_without_tables
    client = side.client()
    token = side.admin_token()
    user_id = client.whoami(token).json()["user_id"]
    openid = client.post(f"/_matrix/client/v3/user/{user_id}/openid/request_token", {}, token=token)
    assert openid.status_code == 200, openid.text

    # What a client does first: trade its OpenID token for one of the identity service.
    registered = client.post("/_matrix/identity/v2/account/register", openid.json())
    # What it does with that token: every call that reads the token table.
    account = client.get("/_matrix/identity/v2/account", token="any-identity-token")

    for response in (registered, account):
        assert response.status_code == 503, response.text
        assert response.json()["errcode"] == "M_UNKNOWN"
        assert "try again" in response.json()["error"]
