# SPDX-License-Identifier: AGPL-3.0-or-later
"""Changing an agent's address from the console, against the shared appliance's real Synapse
and mail sink: the same Matrix ID gets the new address and the new domain's tag; password
reset works with the new address (the mail, the link, the new password, a login by address);
the old address finds nothing. Refusals leave the account as it was.

Single sign-on too: on a Synapse with LemonLDAP::NG (``oidc_fixtures``), the console's change
is made on an agent registered by email, then the person signs in through the provider's page
in Debian's Chromium with the new address and lands in the same account.
"""

from __future__ import annotations

import secrets
from urllib.parse import quote

import pytest
from console_helpers import register_external, user_path
from matrix_helpers import PASSWORD, MailNotFound, Person
from oidc_fixtures import signed_in, sso_sign_in

from admin_console.synapse_admin import SynapseClient
from admin_console.users.address import change_address

pytest_plugins = ["oidc_fixtures"]

NEW_PASSWORD = "Nouveau-Mot-De-Passe-77"


@pytest.fixture
def agent(client):
    tag = secrets.token_hex(3)
    return client.register_account(f"claire.martin.{tag}@ac-paris.fr")


def emails(synapse, user_id: str) -> list[str]:
    return [t["address"] for t in synapse.user(user_id)["threepids"] if t["medium"] == "email"]


def change(console, user_id: str, address: str):
    return console.post(f"{user_path(user_id)}/address", email=address)


def flashed(console, response) -> str:
    """The page the operator sees after the POST (the redirect's target, or the form again)."""
    if response.status_code == 302:
        return console.get(response.headers["Location"])
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def test_the_new_address_resets_the_password_of_the_same_account_and_the_old_finds_nothing(
    console, synapse, client, admin_token, agent
):
    old = agent.address
    new = old.replace("@ac-paris.fr", "@education.gouv.fr")
    name_before = synapse.user(agent.user_id)["displayname"]
    assert name_before.endswith(" [ac-paris.fr]")
    assert "Change the address" in console.get(user_path(agent.user_id))

    response = change(console, agent.user_id, new)
    assert response.status_code == 302, response.get_data(as_text=True)
    assert "is changed" in flashed(console, response)
    assert emails(synapse, agent.user_id) == [new]
    name_part = name_before.removesuffix(" [ac-paris.fr]")
    assert synapse.user(agent.user_id)["displayname"] == f"{name_part} [education.gouv.fr]"
    audit = console.get(f"/audit/?q={quote(agent.user_id)}")
    assert "user.address" in audit and f"{old} -&gt; {new}" in audit

    # The old address: no account behind it, no reset mail, no login.
    assert client.user_of_email(old, admin_token).status_code == 404
    old_session = client.open_session("password_reset", old)
    assert client.login_with_email(old, PASSWORD).status_code == 403
    # The new one: Synapse's own reset mail, its link, the new password, the same Matrix ID.
    assert client.user_of_email(new, admin_token).json()["user_id"] == agent.user_id
    session = client.verify("password_reset", new)
    assert client.reset_password(session, NEW_PASSWORD).status_code == 200
    login = client.login_with_email(new, NEW_PASSWORD)
    assert login.status_code == 200, login.text
    assert login.json()["user_id"] == agent.user_id
    # The old address's request was answered like any other, and mailed nobody.
    with pytest.raises(MailNotFound):
        client.mail_for(old_session, timeout=0)


def test_an_agent_who_had_the_mails_keeps_them_at_the_new_address(console, synapse, client):
    with_mails, without = (
        client.register_account(f"{name}.{secrets.token_hex(3)}@ac-paris.fr")
        for name in ("paul.roux", "lea.petit")
    )
    for account in (with_mails, without):  # the shared appliance: the setting is off
        person = Person(client, account.user_id, account.access_token)
        assert [p["pushkey"] for p in person.pushers() if p["app_id"] == "m.email"] == []
    mails = Person(client, with_mails.user_id, with_mails.access_token)
    assert mails.add_email_pusher(with_mails.address).status_code == 200

    for account in (with_mails, without):
        new = account.address.replace("@ac-paris.fr", "@education.gouv.fr")
        assert change(console, account.user_id, new).status_code == 302
        assert emails(synapse, account.user_id) == [new]

    def email_pushers(account) -> list[str]:
        person = Person(client, account.user_id, account.access_token)
        return [p["pushkey"] for p in person.pushers() if p["app_id"] == "m.email"]

    # Added when the new address is bound, in the Admin API's own request.
    assert email_pushers(with_mails) == [emails(synapse, with_mails.user_id)[0]]
    assert email_pushers(without) == []  # who had not asked for the mails is not given them


def test_an_address_of_a_domain_not_allowed_is_refused_and_nothing_changes(console, synapse, agent):
    name_before = synapse.user(agent.user_id)["displayname"]
    response = change(console, agent.user_id, agent.address.replace("ac-paris.fr", "gmail.com"))
    assert "gmail.com is not an allowed domain" in flashed(console, response)
    assert emails(synapse, agent.user_id) == [agent.address]
    assert synapse.user(agent.user_id)["displayname"] == name_before
    assert "user.address" in console.get(f"/audit/?q={quote(agent.user_id)}")


def test_an_address_another_account_holds_is_refused(console, synapse, client, agent):
    other = client.register_account(f"autre.{secrets.token_hex(3)}@ac-paris.fr")
    page = flashed(console, change(console, agent.user_id, other.address))
    assert f"{other.address} is the address of {other.user_id}" in page
    assert emails(synapse, agent.user_id) == [agent.address]
    assert emails(synapse, other.user_id) == [other.address]


def test_an_external_is_refused(console, synapse, appliance):
    external = register_external(appliance, f"addr{secrets.token_hex(3)}")
    before = emails(synapse, external)
    page = flashed(console, change(console, external, f"x{secrets.token_hex(3)}@ac-paris.fr"))
    assert "an external&#39;s address is the one it was invited with" in page
    assert emails(synapse, external) == before


def test_a_bad_address_is_refused_by_the_form(console, synapse, agent):
    page = flashed(console, change(console, agent.user_id, "not an address"))
    assert "Not changed:" in page
    assert emails(synapse, agent.user_id) == [agent.address]


def test_the_change_needs_the_csrf_token(console, synapse, agent):
    new = agent.address.replace("@ac-paris.fr", "@interieur.gouv.fr")
    path = f"{user_path(agent.user_id)}/address"
    response = console.client.post(path, data={"email": new})
    assert response.status_code == 400
    assert emails(synapse, agent.user_id) == [agent.address]


def test_single_sign_on_with_the_new_address_enters_the_same_account(
    sso_server, chromium, console_app
):
    tag = secrets.token_hex(3)
    old, new = f"julie.fusion.{tag}@ac-paris.fr", f"julie.fusion.{tag}@interieur.gouv.fr"
    account = sso_server.synapse.client().register_account(old)
    # The console's own change, made on this Synapse with its service account.
    synapse = SynapseClient(sso_server.url, sso_server.synapse.layout.service_token)
    with console_app.test_request_context():
        assert change_address(synapse, account.user_id, new) == f"{old} -> {new}"

    person = sso_server.idp.add_person(f"jf{tag}", new, given="Julie", family="Fusion")
    login = signed_in(sso_server, sso_sign_in(chromium, sso_server, person.login, person.password))
    assert login["user_id"] == account.user_id

    # The provider's account with the old address is somebody else now: it never enters the
    # account (whose ID that address derives), it gets one of its own.
    former = sso_server.idp.add_person(f"jfold{tag}", old, given="Julie", family="Fusion")
    other = signed_in(sso_server, sso_sign_in(chromium, sso_server, former.login, former.password))
    assert other["user_id"] != account.user_id
