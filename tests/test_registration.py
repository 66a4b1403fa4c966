# SPDX-License-Identifier: AGPL-3.0-or-later
"""Registration of agents by a verified professional address, over real HTTP.

The shared appliance (real Synapse with the module, real SMTP sink) runs the Tchap flow as any
Matrix client does: request a token, read the mail in the sink, follow the link, register, log
in by email, reset the password.  A second Synapse (`side_synapse`) shows what the shared one
must not be put through: its SMTP server down, a short link lifetime, Synapse's own email
requirement switched off, its allowlist made unreadable.
"""

from __future__ import annotations

import re
import sqlite3
import time
from email.header import decode_header, make_header
from urllib.parse import urlsplit

import pytest
from harness import TEST_DOMAINS, evaluation_settings
from hypothesis import example, given, settings
from hypothesis import strategies as st
from matrix_helpers import OPEN_TO_EXTERNALS, PASSWORD, Person, SideSynapse, plain_text

from appliance.addresses.domain_allowlist import DomainAllowlist
from appliance.config.layout import Layout
from appliance.synapse_module.accounts.registration import decide

# --- the shared appliance ------------------------------------------------------------------------


@pytest.fixture
def server_name(appliance) -> str:
    return appliance.settings.server_name


def user_count(client, admin_token) -> int:
    response = client.get("/_synapse/admin/v2/users?limit=1&guests=false", token=admin_token)
    assert response.status_code == 200, response.text
    return response.json()["total"]


def test_allowed_address_gets_its_identity_whatever_username_it_proposes(
    client, server_name, admin_token
):
    # Upper case is normalised and admitted; the proposed username is ignored.
    account = client.register_account("Pierre.Dupont@AC-Paris.fr", username="hacker")

    assert account.user_id == f"@pierre.dupont-ac-paris.fr:{server_name}"
    assert (
        client.display_name(account.user_id, token=account.access_token)
        == "Pierre Dupont [ac-paris.fr]"
    )
    assert client.whoami(account.access_token).json()["user_id"] == account.user_id
    bound = client.user_of_email("pierre.dupont@ac-paris.fr", admin_token)
    assert bound.json()["user_id"] == account.user_id
    hacker = client.get(
        f"/_matrix/client/v3/profile/@hacker:{server_name}", token=account.access_token
    )
    assert hacker.status_code == 404


def test_the_verification_mail_is_in_french_and_english(client, server_name):
    session = client.open_session("register", "odile.roy@ac-paris.fr")

    mail = client.mail_for(session)

    assert mail["Subject"] == f"[{server_name}] Confirmez votre adresse / Confirm your address"
    text = plain_text(mail)
    assert text.startswith("Bonjour") and "Hello" in text and client.link_for(session) in text
    html = next(p for p in mail.walk() if p.get_content_type() == "text/html")
    body = html.get_payload(decode=True).decode()
    assert 'lang="fr"' in body and 'lang="en"' in body
    assert "<img" not in body  # nothing fetched from outside when the mail is read


def test_a_username_already_taken_does_not_stop_registration(client, server_name):
    account = client.register_account("claire.martin@ac-paris.fr", username="appliance-console")

    assert account.user_id == f"@claire.martin-ac-paris.fr:{server_name}"


def test_colliding_addresses_get_a_numeric_suffix(client, server_name):
    # Both map to anne-sg-dgfip.gouv.fr: '@' becomes '-', so the mapping is not one-to-one.
    first = client.register_account("anne@sg-dgfip.gouv.fr")
    second = client.register_account("anne-sg@dgfip.gouv.fr")

    assert first.user_id == f"@anne-sg-dgfip.gouv.fr:{server_name}"
    assert second.user_id == f"@anne-sg-dgfip.gouv.fr-2:{server_name}"
    assert (
        client.display_name(second.user_id, token=second.access_token) == "Anne-Sg [dgfip.gouv.fr]"
    )


def test_a_domain_not_on_the_list_is_refused_with_threepid_denied(client, admin_token):
    response = client.request_token("register", "jean@evil.com")

    assert response.status_code == 403
    assert response.json()["errcode"] == "M_THREEPID_DENIED"
    assert client.mails_to("jean@evil.com") == []
    # The identity lookup is where the domain is named (Synapse's 403 message is fixed).
    info = client.identity_info("jean@evil.com").json()
    assert info["requires_invite"] is True and "evil.com" in info["reason"]


BYPASS_ATTEMPTS = {
    "listed domain as a prefix": "agent@ac-paris.fr.evil.com",
    "listed domain as a suffix": "agent@evil-ac-paris.fr",
    "trailing dot": "agent@ac-paris.fr.",
    "wildcard's own domain": "agent@gouv.fr",
    "wildcard suffix glued on": "agent@evilgouv.fr",
    "quoted local part": '"agent"@ac-paris.fr',
    "commented local part": "agent(x)@ac-paris.fr",
    "Cyrillic look-alike": "agent@ac-p\u0430ris.fr",
    "punycode of the look-alike": "agent@xn--ac-pris-5fg.fr",
    "zero-width space": "agent@ac-pa\u200bris.fr",
    "percent-encoded dot": "agent@ac-paris%2efr",
    "fullwidth spelling of the domain": "agent@\uff41\uff43-paris.fr",
}
# Synapse itself refuses these before the module is asked (it splits on '@').
REFUSED_BY_SYNAPSE = {
    "several @": "agent@evil.com@ac-paris.fr",
    "quoted @ in the local part": '"agent@evil.com"@ac-paris.fr',
}


@pytest.mark.parametrize("address", BYPASS_ATTEMPTS.values(), ids=BYPASS_ATTEMPTS.keys())
def test_bypass_attempts_are_refused_before_any_mail(client, address):
    response = client.request_token("register", address)

    assert (response.status_code, response.json()["errcode"]) == (403, "M_THREEPID_DENIED")
    assert client.mails_to(address) == []
    # The identity lookup agrees: never "this server" for such an address.
    info = client.identity_info(address)
    assert info.status_code == 400 or info.json().get("requires_invite") is True


@pytest.mark.parametrize("address", REFUSED_BY_SYNAPSE.values(), ids=REFUSED_BY_SYNAPSE.keys())
def test_addresses_with_several_at_signs_are_refused(client, address):
    response = client.request_token("register", address)

    assert response.status_code == 400
    assert response.json()["error"] == "Unable to parse email address"
    assert client.mails_to(address) == []


# --- an address's verification is for one purpose ---------------------------------------------
# Synapse's verification sessions do not record what they were opened for; with
# enable_3pid_changes off, no session opened to register can reach an existing account.
THREEPID_CHANGES_OFF = "3PID changes are disabled on this server"  # Synapse's message


def threepids(client, account) -> list[str]:
    response = client.get("/_matrix/client/v3/account/3pid", token=account.access_token)
    assert response.status_code == 200, response.text
    return sorted(t["address"] for t in response.json()["threepids"])


def password_auth(account) -> dict:
    identifier = {"type": "m.id.user", "user": account.user_id}
    return {"type": "m.login.password", "identifier": identifier, "password": account.password}


def test_a_registration_session_cannot_add_its_address_to_an_account(client, admin_token):
    agent = client.register_account("luc.bernard@ac-paris.fr")
    session = client.verify("register", "luc.bernard@education.gouv.fr")

    attempts = {
        "/account/3pid/add": {**session.threepid_creds, "auth": password_auth(agent)},
        "/account/3pid": {"three_pid_creds": session.threepid_creds},  # the deprecated form
    }
    for path, body in attempts.items():
        response = client.post(f"/_matrix/client/v3{path}", body, token=agent.access_token)
        assert (response.status_code, response.json()) == (
            400,
            {"errcode": "M_FORBIDDEN", "error": THREEPID_CHANGES_OFF},
        ), path

    assert threepids(client, agent) == ["luc.bernard@ac-paris.fr"]
    assert client.user_of_email("luc.bernard@education.gouv.fr", admin_token).status_code == 404
    # The session still does what it was opened for: its own account.
    assert client.register(session).status_code == 200
    owner = client.user_of_email("luc.bernard@education.gouv.fr", admin_token).json()["user_id"]
    assert owner != agent.user_id


def test_an_invited_external_address_cannot_be_attached_to_the_inviting_agent(
    client, admin_token, server_name
):
    agent = client.register_account("remi.lacroix@ac-paris.fr")
    host = Person(client, agent.user_id, agent.access_token)
    room = host.new_room(
        name="Sous-traitants", preset="private_chat", initial_state=OPEN_TO_EXTERNALS
    )
    assert host.invite_by_email(room, "remi.perso@mailbox.example").status_code == 200
    # The invitation admits the address to register: the agent verifies it himself...
    session = client.verify("register", "remi.perso@mailbox.example")

    # ...and tries to attach it to his own account, by every door Synapse has.
    for path, body in {
        "/account/3pid/add": {**session.threepid_creds, "auth": password_auth(agent)},
        "/account/3pid": {"three_pid_creds": session.threepid_creds},
        "/account/3pid/bind": {
            **session.threepid_creds,
            "id_server": urlsplit(client.base_url).netloc,
            "id_access_token": agent.access_token,
        },
    }.items():
        response = client.post(f"/_matrix/client/v3{path}", body, token=agent.access_token)
        assert response.status_code != 200 and "errcode" in response.json(), path

    assert threepids(client, agent) == ["remi.lacroix@ac-paris.fr"]
    assert client.user_of_email("remi.perso@mailbox.example", admin_token).status_code == 404
    pending = client.get("/_synapse/client/appliance/v1/invitations", token=admin_token).json()
    mine = [i for i in pending["invitations"] if i["address"] == "remi.perso@mailbox.example"]
    assert [i["status"] for i in mine] == ["pending"]
    # The address reaches an account only through its own invitation: an external's.
    guest = client.register(session)
    assert guest.status_code == 200, guest.text
    guest_id = guest.json()["user_id"]
    assert guest_id != agent.user_id
    assert host.joined_members(room) == sorted([agent.user_id, guest_id])
    name = client.display_name(guest_id, token=guest.json()["access_token"])
    assert name == "Remi Perso [mailbox.example] (external)"


def test_no_session_is_opened_to_add_an_address_so_none_can_register(client, admin_token):
    agent = client.register_account("ines.garnier@ac-paris.fr")
    capabilities = client.get("/_matrix/client/v3/capabilities", token=agent.access_token).json()
    assert capabilities["capabilities"]["m.3pid_changes"] == {"enabled": False}

    for address in ("ines.garnier@interieur.gouv.fr", "ines@evil.com"):
        response = client.request_token("add_email", address, token=agent.access_token)
        assert (response.status_code, response.json()["errcode"]) == (400, "M_FORBIDDEN")
        assert response.json()["error"] == THREEPID_CHANGES_OFF
        assert client.mails_to(address) == []
    removed = client.post(
        "/_matrix/client/v3/account/3pid/delete",
        {"medium": "email", "address": "ines.garnier@ac-paris.fr"},
        token=agent.access_token,
    )
    assert (removed.status_code, removed.json()["errcode"]) == (400, "M_FORBIDDEN")
    assert threepids(client, agent) == ["ines.garnier@ac-paris.fr"]


def test_an_administrator_can_still_add_an_address(client, admin_token):
    agent = client.register_account("noe.marchand@ac-paris.fr")
    path = f"/_synapse/admin/v2/users/{agent.user_id}"
    both = [
        {"medium": "email", "address": "noe.marchand@ac-paris.fr"},
        {"medium": "email", "address": "noe.marchand@education.gouv.fr"},
    ]
    response = client.request("PUT", path, token=admin_token, json={"threepids": both})

    assert response.status_code == 200, response.text
    login = client.login_with_email("noe.marchand@education.gouv.fr")
    assert login.json()["user_id"] == agent.user_id


def test_login_by_email_on_two_devices(client):
    account = client.register_account("sophie.leroy@ac-paris.fr")

    laptop = client.login_with_email("Sophie.Leroy@AC-PARIS.fr", device_name="laptop").json()
    phone = client.login_with_email("sophie.leroy@ac-paris.fr", device_name="phone").json()

    assert laptop["user_id"] == phone["user_id"] == account.user_id
    assert laptop["device_id"] != phone["device_id"]
    for token in (laptop["access_token"], phone["access_token"], account.access_token):
        assert client.whoami(token).json()["user_id"] == account.user_id
    devices = client.get("/_matrix/client/v3/devices", token=phone["access_token"]).json()
    names = {device.get("display_name") for device in devices["devices"]}
    assert {"laptop", "phone"} <= names


def test_a_wrong_password_is_refused(client):
    client.register_account("paul.roux@ac-paris.fr")

    response = client.login_with_email("paul.roux@ac-paris.fr", "Wrong-Password-99")

    assert (response.status_code, response.json()["errcode"]) == (403, "M_FORBIDDEN")


def test_password_reset_by_email(client):
    account = client.register_account("julie.moreau@ac-paris.fr")

    session = client.verify("password_reset", "julie.moreau@ac-paris.fr")
    assert client.reset_password(session, "New-Password-2024").status_code == 200

    assert client.whoami(account.access_token).status_code == 401  # devices logged out
    assert client.login_with_email("julie.moreau@ac-paris.fr").status_code == 403
    relogin = client.login_with_email("julie.moreau@ac-paris.fr", "New-Password-2024")
    assert relogin.json()["user_id"] == account.user_id


def test_password_reset_does_not_tell_who_has_an_account(client):
    client.register_account("rose.vidal@ac-paris.fr")
    answers = {}
    for address in ("rose.vidal@ac-paris.fr", "nobody@ac-paris.fr", "nobody@evil.com"):
        response = client.request_token("password_reset", address)
        answers[address] = (response.status_code, tuple(sorted(response.json())))

    assert set(answers.values()) == {(200, ("sid",))}
    assert client.mails_to("nobody@ac-paris.fr") == client.mails_to("nobody@evil.com") == []
    assert len(client.mails_to("rose.vidal@ac-paris.fr")) == 2  # registration, then reset


def test_registering_a_taken_address_does_not_tell_the_caller(client):
    client.register_account("yann.colin@ac-paris.fr")
    taken = client.request_token("register", "yann.colin@ac-paris.fr")
    free = client.request_token("register", "yann.colin2@ac-paris.fr")

    assert (taken.status_code, sorted(taken.json())) == (free.status_code, sorted(free.json()))
    assert taken.status_code == 200
    # The owner is told instead, and the answer's session leads nowhere.
    mails = client.mails_to("yann.colin@ac-paris.fr")
    subjects = [str(make_header(decode_header(m["Subject"]))) for m in mails]
    assert sorted(subject.endswith("Address already in use") for subject in subjects) == [
        False,  # the registration's link
        True,
    ]
    sid = taken.json()["sid"]
    assert not any(f"sid={sid}" in plain_text(m) for m in mails)


def test_login_does_not_tell_an_unknown_address_from_a_wrong_password(client):
    client.register_account("lena.aubert@ac-paris.fr")
    wrong = client.login_with_email("lena.aubert@ac-paris.fr", "Wrong-Password-99")
    unknown = client.login_with_email("nobody.known@ac-paris.fr", "Wrong-Password-99")

    assert (wrong.status_code, wrong.json()) == (unknown.status_code, unknown.json())
    assert wrong.status_code == 403


def test_a_used_link_cannot_make_a_second_account(client, admin_token):
    session = client.verify("register", "marc.petit@ac-paris.fr")
    assert client.register(session).status_code == 200
    users = user_count(client, admin_token)

    again = client.register(session, username="marc2")
    assert (again.status_code, again.json()["errcode"]) == (401, "M_UNAUTHORIZED")
    reopened = client.follow(client.link_for(session))
    # (request_token_inhibit_3pid_errors: Synapse does not say the session is gone either)
    assert reopened.status_code == 400
    assert "Validation token not found or has expired" in reopened.text
    assert user_count(client, admin_token) == users


def test_client_registration_without_email_is_not_offered(client, admin_token):
    users = user_count(client, admin_token)
    response = client.post("/_matrix/client/v3/register", {"password": PASSWORD})
    assert response.status_code == 401
    assert response.json()["flows"] == [{"stages": ["m.login.email.identity"]}]

    dummy = client.post(
        "/_matrix/client/v3/register",
        {
            "password": PASSWORD,
            "auth": {"type": "m.login.dummy", "session": response.json()["session"]},
        },
    )

    assert dummy.status_code == 401 and "access_token" not in dummy.json()
    assert user_count(client, admin_token) == users


# --- the decision itself: what it admits is always plainly an allowed address ----------------


def _mixed(*choices: str) -> st.SearchStrategy[str]:
    return st.sampled_from(choices)


# Addresses built around the listed domains, with the tricks of the bypass list mixed in.
_ADDRESSES = st.builds(
    lambda local, at, prefix, core, suffix: f"{local}{at}{prefix}{core}{suffix}",
    st.lists(
        _mixed("a", "Z", "0", ".", "-", "+", "'", '"', "(", " ", "\u212a", "\u00df"),
        min_size=1,
        max_size=5,
    ).map("".join),
    _mixed("@", "@", "@", "@@", "\uff20"),
    _mixed("", "", "", "evil-", "evil.", "a.", "\u200b", " ", "%2e"),
    _mixed(
        "ac-paris.fr",
        "AC-Paris.FR",
        "x.gouv.fr",
        "gouv.fr",
        "ac-p\u0430ris.fr",
        "\uff41\uff43-paris.fr",
        "ac-paris\u3002fr",
        "xn--ac-pris-5fg.fr",
        "ac-paris%2efr",
        "x.gouv.fr.evil.com",
    ),
    _mixed("", "", "", ".", ".evil.com", " ", "\u200b", "-x", "\u00ad", "\ufe0f"),
)
_ADMITTED_DOMAIN = re.compile(r"(ac-paris\.fr|([a-z0-9-]+\.)+gouv\.fr)")


@settings(max_examples=1000, deadline=None)
@given(_ADDRESSES)
@example("Pierre.Dupont@AC-Paris.FR")
def test_an_admitted_address_is_plainly_on_the_list(address):
    admission = decide(address, DomainAllowlist(TEST_DOMAINS), server_name="test.localhost")

    if admission.allowed:
        local, _, domain = address.lower().partition("@")
        assert re.fullmatch(r"[a-z0-9._+'-]+", local), address
        assert _ADMITTED_DOMAIN.fullmatch(domain), address
        assert admission.email.address == address.lower()


# --- a second Synapse for the failure cases --------------------------------------------------

LINK_LIFETIME_SECONDS = 3


def _loosen(config: dict) -> None:
    # Synapse's own email requirement off: the module is then the only gate.
    config.pop("registrations_require_3pid")
    config["enable_registration_without_verification"] = True


@pytest.fixture(scope="module")
def side_synapse(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("side-synapse")
    settings = evaluation_settings(
        state_dir,
        registration={
            "allowed_domains": ["ac-paris.fr", "*.gouv.fr"],
            "validation_token_lifetime": f"{LINK_LIFETIME_SECONDS}s",
        },
    )
    with SideSynapse(
        settings, Layout.from_settings(settings, state_dir), edit_config=_loosen
    ) as side:
        yield side


def side_db(side: SideSynapse) -> sqlite3.Connection:
    return sqlite3.connect(side.layout.synapse_dir / "homeserver.db", timeout=30)


def rows(side: SideSynapse, query: str, *params) -> list[tuple]:
    with side_db(side) as db:
        return db.execute(query, params).fetchall()


def test_client_registration_without_email_is_denied_by_the_module(side_synapse):
    client = side_synapse.client()
    first = client.post("/_matrix/client/v3/register", {"username": "sneaky", "password": PASSWORD})
    assert {"stages": ["m.login.dummy"]} in first.json()["flows"]  # Synapse would let it in

    response = client.post(
        "/_matrix/client/v3/register",
        {
            "username": "sneaky",
            "password": PASSWORD,
            "auth": {"type": "m.login.dummy", "session": first.json()["session"]},
        },
    )

    # Synapse turns the module's refusal into a 429 on purpose; the log says why.
    assert response.status_code == 429
    assert rows(side_synapse, "SELECT name FROM users WHERE name LIKE ?", "%sneaky%") == []
    log = side_synapse.layout.logfile("synapse").read_text()
    assert "refused registration of 'sneaky': no verified email address" in log


def test_smtp_down_gives_a_clear_error_and_leaves_nothing(side_synapse):
    client = side_synapse.client()
    side_synapse.stop_mail_sink()
    try:
        response = client.request_token("register", "remi.faure@ac-paris.fr")
    finally:
        side_synapse.start_mail_sink()

    assert response.status_code == 500
    assert response.json() == {
        "errcode": "M_UNKNOWN",
        "error": "An error was encountered when sending the email",
    }
    pending = "SELECT session_id FROM threepid_validation_session WHERE address = ?"
    assert rows(side_synapse, pending, "remi.faure@ac-paris.fr") == []
    assert rows(side_synapse, "SELECT name FROM users WHERE name LIKE ?", "%remi.faure%") == []


def test_an_expired_link_gives_a_clear_error_and_no_account(side_synapse):
    client = side_synapse.client()
    session = client.open_session("register", "lea.girard@ac-paris.fr")
    link = client.link_for(session)
    time.sleep(LINK_LIFETIME_SECONDS + 1)  # let the link expire

    page = client.follow(link)
    response = client.register(session)

    assert page.status_code == 400 and "This token has expired" in page.text
    assert response.status_code == 401
    assert response.json()["error"] == "Unable to get validated threepid"
    assert rows(side_synapse, "SELECT name FROM users WHERE name LIKE ?", "%lea.girard%") == []


def test_registration_is_refused_while_the_allowlist_cannot_be_read(side_synapse):
    client = side_synapse.client()
    this_server = {"hs": side_synapse.settings.server_name}
    assert client.identity_info("yves@ac-paris.fr").json() == this_server

    with side_db(side_synapse) as db:
        db.execute("ALTER TABLE appliance_allowlist_state RENAME TO appliance_allowlist_hidden")
    try:
        lookup = _wait_for_status(client, "yves@ac-paris.fr", 503)
        refused = client.request_token("register", "yves@ac-paris.fr")
    finally:
        with side_db(side_synapse) as db:
            db.execute("ALTER TABLE appliance_allowlist_hidden RENAME TO appliance_allowlist_state")

    assert lookup.json()["errcode"] == "M_UNKNOWN"
    assert "cannot be read" in lookup.json()["error"]
    assert (refused.status_code, refused.json()["errcode"]) == (403, "M_THREEPID_DENIED")
    assert _wait_for_status(client, "yves@ac-paris.fr", 200).json() == this_server


def _wait_for_status(client, address: str, status: int, timeout: float = 30.0):
    """Poll the identity lookup until it answers `status` (the store refreshes in the
    background)."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.identity_info(address)
        if response.status_code == status or time.monotonic() > deadline:
            assert response.status_code == status, response.text
            return response
        time.sleep(0.2)


def test_the_settings_only_seed_the_list_on_the_first_start(side_synapse):
    """Kept last: it restarts the side Synapse, after changing its list through the API."""
    client, token = side_synapse.client(), side_synapse.admin_token()
    domains = "/_synapse/client/appliance/v1/domains"
    assert client.request("DELETE", f"{domains}/*.gouv.fr", token=token).status_code == 200
    assert client.request("PUT", f"{domains}/ac-lyon.fr", token=token).status_code == 201

    side_synapse.restart_synapse()

    listed = client.get(domains, token=token).json()["domains"]
    assert [row["entry"] for row in listed] == ["ac-lyon.fr", "ac-paris.fr"]
    log = side_synapse.layout.logfile("synapse").read_text()
    assert "allowlist seeded from appliance.yaml with 2 entries" in log
    assert "allowlist already in the database" in log
