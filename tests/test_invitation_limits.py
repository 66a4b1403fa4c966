# SPDX-License-Identifier: AGPL-3.0-or-later
"""No official mail as a weapon: the appliance's invitation endpoint, driven as a hostile agent.

Against the shared appliance (its limits are the defaults of appliance.yaml, read from its
settings, never written here): one agent looping on invitations, many agents mailing one
address, the same address invited twice into one room, names built to phish or to inject
headers. Then a Synapse of its own with a small daily cap: the cap holds against a loop, against
requests sent all at once, and across a restart (the count lives in the database, not in a
process). Mails are counted in the real SMTP sink; room state is read event by event.
"""

from __future__ import annotations

import re
import secrets
from concurrent.futures import ThreadPoolExecutor
from email.header import decode_header, make_header
from email.message import Message

import pytest
import requests
import yaml
from harness import evaluation_settings
from matrix_helpers import (
    OPEN_TO_EXTERNALS,
    MatrixClient,
    Person,
    SideSynapse,
    plain_text,
    read_maildir,
    wait_for_allowlist,
)
from synapse.config import ConfigError

from appliance.config.layout import Layout
from appliance.config.settings import SettingsError, parse_settings
from appliance.synapse_module import ApplianceModule
from appliance.synapse_module.externals.invitation_mail import MAX_QUOTED
from appliance.synapse_module.externals.invitations import (
    DAY_MS,
    MINUTE_MS,
    ONLY_MEMBERS_WHO_MAY_INVITE,
    TOO_MANY_FOR_ADDRESS,
    TOO_MANY_FROM_YOU_NOW,
    TOO_MANY_FROM_YOU_TODAY,
)

ATTEMPTS = 200
THIRD_PARTY_INVITE = "m.room.third_party_invite"


def tag() -> str:
    return secrets.token_hex(4)


def agent(client: MatrixClient, name: str) -> Person:
    return Person.register(client, f"{name}.{tag()}@ac-paris.fr")


def open_room(person: Person, name: str = "Partenaires") -> str:
    return person.new_room(name=name, preset="private_chat", initial_state=OPEN_TO_EXTERNALS)


def mails_matching(client: MatrixClient, marker: str) -> list[Message]:
    """Every mail delivered to an address that contains marker (one Maildir read)."""
    return [m for m in read_maildir(client.mail_dir) if marker in (m["To"] or "").lower()]


def pending_invites(person: Person, room_id: str) -> list[str]:
    """The state keys of the room's email invitations still shown as pending."""
    return [
        key
        for (event_type, key), content in person.state(room_id).items()
        if event_type == THIRD_PARTY_INVITE and content
    ]


def assert_limit_exceeded(response: requests.Response, message: str, window_ms: int) -> int:
    """The answer a client can act on: 429, its errcode, the message, when to try again."""
    assert response.status_code == 429, response.text
    body = response.json()
    assert body["errcode"] == "M_LIMIT_EXCEEDED" and body["error"] == message, body
    assert 0 < body["retry_after_ms"] <= window_ms, body
    assert int(response.headers["Retry-After"]) >= 1
    return body["retry_after_ms"]


@pytest.fixture(scope="module")
def limits(appliance):
    return appliance.settings.externals


# --- one agent, many invitations ----------------------------------------------------------------


def test_an_agent_looping_on_invitations_is_stopped_at_the_limit_and_mails_no_more(client, limits):
    spammer = agent(client, "boucle")
    room = open_room(spammer)
    marker = f"spam-{tag()}"
    limit = limits.invitations_per_inviter_per_minute

    answers = [
        spammer.invite_by_email(room, f"{marker}-{n}@victims.example") for n in range(ATTEMPTS)
    ]

    assert [a.status_code for a in answers[:limit]] == [200] * limit, answers[limit - 1].text
    for answer in answers[limit:]:
        assert_limit_exceeded(answer, TOO_MANY_FROM_YOU_NOW, MINUTE_MS)
    assert len(mails_matching(client, marker)) == limit
    # Nothing half-made for the refused ones: the room shows exactly the invitations mailed.
    assert len(pending_invites(spammer, room)) == limit
    # The limit is the inviter's, not the room's: another room changes nothing.
    elsewhere = spammer.invite_by_email(open_room(spammer), f"{marker}-x@victims.example")
    assert_limit_exceeded(elsewhere, TOO_MANY_FROM_YOU_NOW, MINUTE_MS)
    assert len(mails_matching(client, marker)) == limit


def test_many_agents_mailing_one_address_are_stopped_at_the_address_limit(client, limits):
    limit = limits.invitations_per_address_per_day
    victim = f"cible-{tag()}@victims.example"
    agents = [agent(client, f"meute{n}") for n in range(3)]
    rooms_each = -(-(limit + 2) // len(agents))  # enough attempts to pass the limit by two
    attempts = [(person, open_room(person)) for person in agents for _ in range(rooms_each)]

    answers = [person.invite_by_email(room, victim) for person, room in attempts]

    assert [a.status_code for a in answers[:limit]] == [200] * limit
    for answer in answers[limit:]:
        assert_limit_exceeded(answer, TOO_MANY_FOR_ADDRESS, DAY_MS)
    assert len(mails_matching(client, victim)) == limit
    for (person, room), answer in zip(attempts, answers, strict=True):
        assert len(pending_invites(person, room)) == (1 if answer.status_code == 200 else 0)
    # Another address is not held back by this one's limit.
    person, room = attempts[-1]
    assert person.invite_by_email(room, f"autre-{tag()}@victims.example").status_code == 200


# --- the same address, the same room ----------------------------------------------------------


def test_the_same_address_invited_twice_into_a_room_gets_one_mail_and_one_invitation(client):
    host, colleague = agent(client, "hote"), agent(client, "collegue")
    room = open_room(host)
    assert host.invite(room, colleague.user_id).status_code == 200
    assert colleague.join(room).status_code == 200
    levels = host.state(room)[("m.room.power_levels", "")]
    levels["users"][colleague.user_id] = 50  # inviting needs a moderator (Tchap's levels)
    assert host.put_state(room, "m.room.power_levels", levels).status_code == 200
    address = f"double-{tag()}@partner.example"

    first = host.invite_by_email(room, address)
    again = host.invite_by_email(room, address)  # a client that retries
    other = colleague.invite_by_email(room, address.upper())  # a second member, same person

    assert first.status_code == again.status_code == other.status_code == 200, other.text
    assert first.json() == again.json() == other.json()
    assert len(client.mails_to(address)) == 1
    assert len(pending_invites(host, room)) == 1


def test_an_outsider_learns_nothing_from_a_pending_invitation(client):
    host, outsider = agent(client, "hote"), agent(client, "curieux")
    room = open_room(host)
    address = f"secret-{tag()}@partner.example"
    assert host.invite_by_email(room, address).status_code == 200

    response = outsider.invite_by_email(room, address)

    assert response.status_code == 403 and response.json()["error"] == ONLY_MEMBERS_WHO_MAY_INVITE
    assert len(client.mails_to(address)) == 1


def test_after_the_room_withdraws_an_invitation_the_address_may_be_invited_again(client):
    host = agent(client, "hote")
    room = open_room(host)
    address = f"retour-{tag()}@partner.example"
    assert host.invite_by_email(room, address).status_code == 200
    [token] = pending_invites(host, room)
    assert host.put_state(room, THIRD_PARTY_INVITE, {}, token).status_code == 200

    assert host.invite_by_email(room, address).status_code == 200

    assert len(client.mails_to(address)) == 2
    [new_token] = pending_invites(host, room)
    assert new_token != token


# --- what the mail says -----------------------------------------------------------------------

HOSTILE_ROOM = "Cliquez https://evil.example/x\r\nBcc: victim@x"
HOSTILE_NAME = "Support ＨＴＴＰＳ://login．evil.example\nReply-To: pirate@evil.example"


def header(message: Message, name: str) -> str:
    return str(make_header(decode_header(message[name])))


def html_text(message: Message) -> str:
    part = next(p for p in message.walk() if p.get_content_type() == "text/html")
    return part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")


def test_a_room_and_a_name_built_to_phish_reach_the_mail_quoted_cut_and_without_links(
    client, appliance, admin_token
):
    host = agent(client, "hameconneur")
    # Agents cannot pick such a name (tests/test_names.py); an operator can, through the Admin
    # API, and the mail must hold whatever name Synapse stores.
    renamed = requests.put(
        f"{client.base_url}/_synapse/admin/v2/users/{host.user_id}",
        json={"displayname": HOSTILE_NAME},
        headers={"Authorization": f"Bearer {admin_token}"},
        timeout=30,
    )
    assert renamed.status_code == 200, renamed.text
    room = open_room(host, name=HOSTILE_ROOM)
    assert host.state(room)[("m.room.name", "")]["name"] == HOSTILE_ROOM  # the room has it
    address = f"proie-{tag()}@partner.example"

    assert host.invite_by_email(room, address).status_code == 200

    [mail] = client.mails_to(address)
    # One recipient, the invited address: no header was injected.
    assert mail["X-RcptTo"] == address and mail["To"] == address
    assert mail.get_all("Bcc") is None and mail.get_all("Reply-To") is None
    subject = header(mail, "Subject")
    server = appliance.settings.server_name
    assert subject == f"[{server}] Invitation « Cliquez evil·example/x Bcc: victim@x »"
    assert "\r" not in subject and "\n" not in subject
    own_links = appliance.settings.public_baseurl
    for text in (subject, plain_text(mail), html_text(mail)):
        assert "evil.example" not in text.lower() and "login." not in text.lower()
        assert all(link.startswith(own_links) for link in re.findall(r"https?://\S+", text))
    text = plain_text(mail)
    assert "« Support login·evil·example Reply-To: pirate@evil·example » vous invite" in text
    assert '"Support login·evil·example Reply-To: pirate@evil·example" invites you' in text
    assert "« Cliquez evil·example/x Bcc: victim@x »" in text
    # The page the mail links to says the same, quoted the same way.
    link = next(word for word in text.split() if word.startswith(own_links))
    page = requests.get(link, timeout=30).text
    assert "evil.example" not in page and "« Cliquez evil·example/x Bcc: victim@x »" in page


def test_a_long_room_name_is_cut(client):
    host = agent(client, "bavard")
    room = open_room(host, name="Réunion " + "très " * 40 + "longue")
    address = f"long-{tag()}@partner.example"

    assert host.invite_by_email(room, address).status_code == 200

    [mail] = client.mails_to(address)
    quoted = re.search(r"« (.*?) »", header(mail, "Subject")).group(1)
    assert len(quoted) == MAX_QUOTED and quoted.endswith("…") and quoted.startswith("Réunion")
    assert f"« {quoted} »" in plain_text(mail)


# --- the daily cap, on a Synapse of its own ---------------------------------------------------

DAILY_CAP = 6


@pytest.fixture(scope="module")
def capped(tmp_path_factory):
    """A Synapse whose agents may send DAILY_CAP invitations a day, all within a minute."""
    state_dir = tmp_path_factory.mktemp("capped")
    externals = {
        "invitations_per_inviter_per_minute": 1000,
        "invitations_per_inviter_per_day": DAILY_CAP,
        "invitations_per_address_per_day": 100,
    }
    settings = evaluation_settings(state_dir, externals=externals)
    with SideSynapse(settings, Layout.from_settings(settings, state_dir)) as side:
        wait_for_allowlist(side.client())
        yield side


def test_the_daily_cap_stops_a_loop_and_survives_a_restart(capped):
    client = capped.client()
    spammer = agent(client, "quotidien")
    room = open_room(spammer)
    marker = f"jour-{tag()}"

    answers = [
        spammer.invite_by_email(room, f"{marker}-{n}@victims.example") for n in range(ATTEMPTS)
    ]

    assert [a.status_code for a in answers[:DAILY_CAP]] == [200] * DAILY_CAP
    for answer in answers[DAILY_CAP:]:
        retry = assert_limit_exceeded(answer, TOO_MANY_FROM_YOU_TODAY, DAY_MS)
        assert retry > MINUTE_MS  # tomorrow, not in a moment
    assert len(mails_matching(client, marker)) == DAILY_CAP

    capped.restart_synapse()  # a process that counted in memory would forget
    wait_for_allowlist(client)
    after = spammer.invite_by_email(room, f"{marker}-after@victims.example")

    assert_limit_exceeded(after, TOO_MANY_FROM_YOU_TODAY, DAY_MS)
    assert len(mails_matching(client, marker)) == DAILY_CAP


def test_the_daily_cap_holds_against_invitations_sent_all_at_once(capped):
    client = capped.client()
    spammer = agent(client, "rafale")
    rooms = [open_room(spammer) for _ in range(4)]
    marker = f"rafale-{tag()}"
    targets = [(rooms[n % len(rooms)], f"{marker}-{n}@victims.example") for n in range(30)]

    def invite(target: tuple[str, str]) -> requests.Response:
        room_id, address = target  # one connection each: the requests overlap in Synapse
        return requests.post(
            f"{capped.url}/_synapse/client/appliance/v1/invite_external",
            json={"room_id": room_id, "email": address},
            headers={"Authorization": f"Bearer {spammer.token}"},
            timeout=60,
        )

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(invite, targets))

    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] * DAILY_CAP + [429] * (len(targets) - DAILY_CAP), statuses
    assert len(mails_matching(client, marker)) == DAILY_CAP
    assert sum(len(pending_invites(spammer, room)) for room in rooms) == DAILY_CAP


# --- the setting ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -3, "many", 10**6])
def test_a_bad_daily_cap_in_the_settings_names_the_key(value):
    with pytest.raises(SettingsError) as caught:
        parse_settings({"externals": {"invitations_per_inviter_per_day": value}}, "test")
    [problem] = caught.value.problems
    assert problem.startswith("externals.invitations_per_inviter_per_day: ")


@pytest.mark.parametrize("value", [0, "50", True, None])
def test_a_bad_daily_cap_in_the_module_config_names_the_key(value):
    with pytest.raises(ConfigError) as caught:
        ApplianceModule.parse_config({"externals": {"invitations_per_inviter_per_day": value}})
    assert tuple(caught.value.path) == ("externals", "invitations_per_inviter_per_day")
    assert "at least 1" in caught.value.msg


def test_an_unknown_limit_in_the_module_config_is_refused():
    with pytest.raises(ConfigError) as caught:
        ApplianceModule.parse_config({"externals": {"invitations_per_day": 5}})
    assert tuple(caught.value.path) == ("externals", "invitations_per_day")


def test_the_running_module_has_the_limits_of_the_settings(appliance, limits):
    rendered = appliance.layout.homeserver_config.read_text()
    config = ApplianceModule.parse_config(_module_block(rendered))
    assert config.invitation_limits.per_inviter_per_day == limits.invitations_per_inviter_per_day
    assert config.invitation_limits.per_inviter_per_minute == (
        limits.invitations_per_inviter_per_minute
    )
    assert config.invitation_limits.per_address_per_day == limits.invitations_per_address_per_day


def _module_block(homeserver_yaml: str) -> dict:
    [module] = yaml.safe_load(homeserver_yaml)["modules"]
    return module["config"]
