# SPDX-License-Identifier: AGPL-3.0-or-later
"""Terms of use: accepted at registration, asked again at each new version (Synapse's consent).

A Synapse rendered with ``terms`` (a document in a file, a version) and its own SMTP sink. An
agent registers through the appliance's email flow, whose flows now end with Synapse's
``m.login.terms`` stage; the policy the stage links to is the operator's document, served at
``/_matrix/consent``. Then the operator raises the version (a new document) and Synapse is
rendered and started again: the agent, signing in again, is refused sending
(``M_CONSENT_NOT_GIVEN`` with the link), finds a server notice with the link on sync, accepts
through the signed consent form, and may send again.
"""

from __future__ import annotations

import html
import re
import secrets
import time
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests
from harness import evaluation_settings, free_port
from matrix_helpers import PASSWORD, MatrixClient, SideSynapse, _path_part, wait_for_allowlist
from oidc_fixtures import CLIENT_URL, running_sso_server, signed_in
from oidc_fixtures import SignIn as SsoSignIn
from playwright.sync_api import Browser

from appliance.config.layout import Layout
from appliance.config.settings import SettingsError, parse_settings
from appliance.config.terms_document import check_terms_document
from appliance.synapse_module.accounts.registration import SSO_PROVIDER_ID

pytest_plugins = ["oidc_fixtures"]

TIMEOUT = 30
TERMS = "m.login.terms"
EMAIL = "m.login.email.identity"


def terms_settings(state_dir: Path, port: int, document: Path, version: str):
    return evaluation_settings(
        state_dir,
        public_baseurl=f"http://127.0.0.1:{port}/",
        synapse={"listen": {"port": port}},
        terms={"document": str(document), "version": version},
    )


def write_document(path: Path, marker: str) -> None:
    # Braces must reach the reader as text, never run as Synapse's template code.
    path.write_text(f"<h2>Article 1</h2><p>{marker}</p><p>{{{{ 7 * 7 }}}}</p>\n")


def send_text(client: MatrixClient, token: str, room_id: str) -> requests.Response:
    path = (
        f"/_matrix/client/v3/rooms/{_path_part(room_id)}/send/m.room.message/{secrets.token_hex(6)}"
    )
    return client.request("PUT", path, token=token, json={"msgtype": "m.text", "body": "bonjour"})


def password_login(client: MatrixClient, user_id: str) -> str:
    response = client.post(
        "/_matrix/client/v3/login",
        {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user_id},
            "password": PASSWORD,
        },
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def server_notice(client: MatrixClient, token: str, timeout: float = TIMEOUT) -> str:
    """The body of the server notice the agent's syncs bring (joining the notice room)."""
    deadline = time.monotonic() + timeout
    since = None
    while time.monotonic() < deadline:
        params = {"timeout": "2000", **({"since": since} if since else {})}
        response = client.get("/_matrix/client/v3/sync", token=token, params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        since = body["next_batch"]
        rooms = body.get("rooms", {})
        for room_id in rooms.get("invite", {}):
            joined = client.post(f"/_matrix/client/v3/join/{_path_part(room_id)}", {}, token=token)
            assert joined.status_code == 200, joined.text
        for room in rooms.get("join", {}).values():
            for event in room.get("timeline", {}).get("events", []):
                if event["type"] == "m.room.message" and "consent" in event["content"]["body"]:
                    return event["content"]["body"]
    raise AssertionError(f"no server notice about the terms in {timeout} s")


def test_terms_at_registration_then_again_at_a_new_version(tmp_path):
    state_dir, port = tmp_path / "var", free_port()
    document = tmp_path / "terms-v1.html"
    marker_v1 = "PREMIERE-VERSION-" + secrets.token_hex(4)
    write_document(document, marker_v1)
    settings = terms_settings(state_dir, port, document, "1.0")
    layout = Layout.from_settings(settings, state_dir)
    address = f"agent.{secrets.token_hex(3)}@ac-paris.fr"

    with SideSynapse(settings, layout) as synapse:
        client = synapse.client()
        wait_for_allowlist(client)

        # Every registration flow ends with the terms, which link to the operator's document.
        first = client.post("/_matrix/client/v3/register", {"password": PASSWORD})
        assert first.status_code == 401, first.text
        flows = [flow["stages"] for flow in first.json()["flows"]]
        assert flows and all(TERMS in stages for stages in flows), flows
        policy = first.json()["params"][TERMS]["policies"]["privacy_policy"]
        assert policy["version"] == "1.0"
        page = requests.get(policy["en"]["url"], timeout=TIMEOUT)
        assert page.status_code == 200
        assert marker_v1 in page.text
        assert "&#123;&#123; 7 * 7 &#125;&#125;" in page.text and "<p>49</p>" not in page.text

        # The appliance's email flow: the verified address, then the terms.
        session = client.verify("register", address)
        body = {"password": PASSWORD}
        auth = {**session.auth, "session": first.json()["session"]}
        after_email = client.post("/_matrix/client/v3/register", {**body, "auth": auth})
        assert after_email.status_code == 401, after_email.text
        assert after_email.json()["completed"] == [EMAIL]
        terms = {"type": TERMS, "session": first.json()["session"]}
        registered = client.post("/_matrix/client/v3/register", {**body, "auth": terms})
        assert registered.status_code == 200, registered.text
        user_id, token = registered.json()["user_id"], registered.json()["access_token"]

        room = client.post(
            "/_matrix/client/v3/createRoom", {"preset": "private_chat"}, token=token
        ).json()["room_id"]
        assert send_text(client, token, room).status_code == 200

    # The operator publishes a new version.
    marker_v2 = "DEUXIEME-VERSION-" + secrets.token_hex(4)
    document_v2 = tmp_path / "terms-v2.html"
    write_document(document_v2, marker_v2)
    settings = terms_settings(state_dir, port, document_v2, "2.0")
    with SideSynapse(settings, Layout.from_settings(settings, state_dir)) as synapse:
        client = synapse.client()
        wait_for_allowlist(client)
        token = password_login(client, user_id)

        refused = send_text(client, token, room)
        assert refused.status_code == 403, refused.text
        assert refused.json()["errcode"] == "M_CONSENT_NOT_GIVEN"
        assert "2.0" in refused.json()["error"]
        consent_uri = refused.json()["consent_uri"]

        notice = server_notice(client, token)
        assert consent_uri in notice

        page = requests.get(consent_uri, timeout=TIMEOUT)
        assert page.status_code == 200
        assert marker_v2 in page.text and marker_v1 not in page.text
        fields = dict(re.findall(r'name="([uvh])" value="([^"]*)"', page.text))
        fields = {key: html.unescape(value) for key, value in fields.items()}
        assert fields["v"] == "2.0"
        accepted = requests.post(
            f"http://127.0.0.1:{port}/_matrix/consent", data=fields, timeout=TIMEOUT
        )
        assert accepted.status_code == 200, accepted.text
        assert "accepté" in accepted.text

        assert send_text(client, token, room).status_code == 200
        again = requests.get(consent_uri, timeout=TIMEOUT)
        assert "Vous avez accepté cette version." in again.text


def first_sign_in_accepting_the_terms(browser: Browser, server, login: str, password: str):
    """A person's first single sign-on: the provider's login page, then Synapse's terms page
    (its text is checked), the box ticked, then the client's confirmation link."""
    context = browser.new_context(locale="fr-FR")
    context.set_default_timeout(TIMEOUT * 1000)
    try:
        page = context.new_page()
        page.route(
            f"{CLIENT_URL}**",
            lambda route: route.fulfill(status=200, content_type="text/html", body="client"),
        )
        page.goto(
            f"{server.url}/_matrix/client/v3/login/sso/redirect/{SSO_PROVIDER_ID}"
            f"?redirectUrl={quote(CLIENT_URL, safe='')}"
        )
        page.fill("input[name=user]", login)
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        page.wait_for_url(f"{server.url}/_synapse/client/new_user_consent**")
        terms_page = page.inner_text("body")
        terms_link = page.get_attribute("a[href*='consent']", "href")
        page.check("#accepted_version")
        page.click("#consent_form button[type=submit]")
        page.click("a[href*='loginToken']")
        page.wait_for_url(f"{CLIENT_URL}**")
        token = parse_qs(urlsplit(page.url).query)["loginToken"][0]
        return SsoSignIn(token, terms_page, 200), terms_link
    finally:
        context.close()


def test_a_first_single_sign_on_asks_for_the_terms_before_the_account_exists(
    tmp_path_factory, chromium
):
    state_dir = tmp_path_factory.mktemp("terms-sso")
    document = state_dir / "terms.html"
    marker = "CONDITIONS-SSO-" + secrets.token_hex(4)
    write_document(document, marker)
    terms = {"terms": {"document": str(document), "version": "3.1"}}
    with running_sso_server(state_dir, extra=terms) as server:
        person = server.idp.add_person("tsso", "theo.sso@ac-paris.fr", given="Théo", family="Sso")
        sign_in, terms_link = first_sign_in_accepting_the_terms(
            chromium, server, person.login, person.password
        )
        assert "Acceptez les conditions d'utilisation" in sign_in.page_text
        assert terms_link == "/_matrix/consent?v=3.1"
        assert marker in requests.get(server.url + terms_link, timeout=TIMEOUT).text
        login = signed_in(server, sign_in)
        # The account holds the version it accepted: it may send at once.
        client = server.synapse.client()
        token = login["access_token"]
        room = client.post("/_matrix/client/v3/createRoom", {"preset": "private_chat"}, token=token)
        assert room.status_code == 200, room.text
        assert send_text(client, token, room.json()["room_id"]).status_code == 200


def test_a_terms_document_that_cannot_be_read_is_refused_with_its_key(tmp_path):
    missing = tmp_path / "nowhere.html"
    settings = evaluation_settings(tmp_path, terms={"document": str(missing), "version": "1"})
    problems = check_terms_document(settings)
    assert len(problems) == 1 and problems[0].startswith(
        f"terms.document: {missing} cannot be read"
    )
    empty = tmp_path / "empty.html"
    empty.write_text("  \n")
    settings = evaluation_settings(tmp_path, terms={"document": str(empty), "version": "1"})
    assert check_terms_document(settings) == [f"terms.document: {empty} is empty"]


@pytest.mark.parametrize(
    ("terms", "problem"),
    [
        ({"document": "terms.html", "version": "1"}, "terms.document: must be an absolute path"),
        (
            {"document": "/etc/terms.html", "version": "../1"},
            "terms.version: '../1' is not a version: 1 to 32 letters, digits, '.', '-' or '_'",
        ),
        ({"document": "/etc/terms.html"}, "terms.version: Field required"),
    ],
)
def test_bad_terms_settings_name_their_key(terms, problem):
    with pytest.raises(SettingsError) as refused:
        parse_settings({"terms": terms}, "test")
    assert refused.value.problems == [problem]
