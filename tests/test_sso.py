# SPDX-License-Identifier: AGPL-3.0-or-later
"""Single sign-on through a real OpenID provider: LemonLDAP::NG (Debian's), in a real browser.

Debian's Chromium, driven by Playwright, starts where a Matrix client sends its user
(``/_matrix/client/v3/login/sso/redirect``), types a person's login and password into
LemonLDAP::NG's own login page, comes back to Synapse's callback, and the client exchanges the
``loginToken`` for an access token (``m.login.token``), as Element does.  The provider releases
ProConnect's claims (``usual_name``), and the appliance is configured with them.  Each refusal
is checked on the page the person sees and in Synapse's state afterwards (no account).
"""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest
import requests
from matrix_helpers import OPEN_TO_EXTERNALS, PASSWORD, MatrixClient, Person
from oidc_fixtures import BUTTON_LABEL, SsoServer, signed_in, sso_sign_in, token_login

from appliance.addresses.email_address import parse_email
from appliance.addresses.identity import display_name_for, localpart_for
from appliance.config.preflight import check_secret_files
from appliance.config.settings import SettingsError, parse_settings
from appliance.synapse_module.accounts.registration import SSO_PROVIDER_ID
from appliance.synapse_module.accounts.sso_mapping import (
    NO_EMAIL,
    REFUSED_ADDRESS,
    UNVERIFIED_EMAIL,
)

pytest_plugins = ["oidc_fixtures"]

TIMEOUT = 30


def admin_get(server: SsoServer, path: str) -> requests.Response:
    return requests.get(
        server.url + path,
        headers={"Authorization": f"Bearer {server.admin_token}"},
        timeout=TIMEOUT,
    )


def user_count(server: SsoServer) -> int:
    response = admin_get(server, "/_synapse/admin/v2/users?limit=1&guests=false&deactivated=true")
    assert response.status_code == 200, response.text
    return response.json()["total"]


def bound_emails(server: SsoServer, user_id: str) -> list[str]:
    response = admin_get(server, f"/_synapse/admin/v2/users/{quote(user_id)}")
    assert response.status_code == 200, response.text
    return [t["address"] for t in response.json()["threepids"] if t["medium"] == "email"]


def expected_user_id(server: SsoServer, address: str, suffix: str = "") -> str:
    return f"@{localpart_for(parse_email(address))}{suffix}:{server.settings.server_name}"


# --- the polite path ---------------------------------------------------------------------------


def test_the_login_flows_offer_the_providers_button(sso_server):
    flows = requests.get(f"{sso_server.url}/_matrix/client/v3/login", timeout=TIMEOUT).json()
    sso = [f for f in flows["flows"] if f["type"] == "m.login.sso"]
    assert sso and sso[0]["identity_providers"] == [{"id": SSO_PROVIDER_ID, "name": BUTTON_LABEL}]
    assert {"type": "m.login.password"} in flows["flows"]  # password_login defaults to true


def test_an_agent_signs_in_through_the_providers_page_with_the_derived_identity(
    sso_server, chromium
):
    address = "helene.lefevre@ac-paris.fr"
    person = sso_server.idp.add_person("hlefevre", address, given="Hélène", family="Lefèvre")

    login = signed_in(sso_server, sso_sign_in(chromium, sso_server, person.login, person.password))

    user_id = expected_user_id(sso_server, address)
    assert login["user_id"] == user_id
    client = MatrixClient(sso_server.url, sso_server.synapse.layout.mail_dir)
    assert client.whoami(login["access_token"]).json()["user_id"] == user_id
    # ProConnect's given_name and usual_name, in the appliance's "Name [domain]" form.
    assert (
        client.display_name(user_id, token=login["access_token"]) == "Hélène Lefèvre [ac-paris.fr]"
    )
    assert bound_emails(sso_server, user_id) == [address]


def test_without_name_claims_the_display_name_comes_from_the_address(sso_server, chromium):
    address = "marc.aurele@interieur.gouv.fr"
    person = sso_server.idp.add_person("maurele", address)

    login = signed_in(sso_server, sso_sign_in(chromium, sso_server, person.login, person.password))

    client = MatrixClient(sso_server.url, sso_server.synapse.layout.mail_dir)
    assert login["user_id"] == expected_user_id(sso_server, address)
    assert client.display_name(login["user_id"], token=login["access_token"]) == display_name_for(
        parse_email(address)
    )


def test_a_second_sign_in_reuses_the_account(sso_server, chromium):
    address = "paul.second@ac-paris.fr"
    person = sso_server.idp.add_person("psecond", address, given="Paul", family="Second")
    first = signed_in(sso_server, sso_sign_in(chromium, sso_server, person.login, person.password))
    users = user_count(sso_server)

    again = signed_in(sso_server, sso_sign_in(chromium, sso_server, person.login, person.password))

    assert again["user_id"] == first["user_id"] == expected_user_id(sso_server, address)
    assert again["device_id"] != first["device_id"]
    assert user_count(sso_server) == users


def test_an_account_registered_by_email_is_signed_into_not_duplicated(sso_server, chromium):
    address = "claire.email@ac-paris.fr"
    client = sso_server.synapse.client()
    account = client.register_account(address)
    users = user_count(sso_server)
    person = sso_server.idp.add_person("cemail", address, given="Claire", family="Email")

    login = signed_in(sso_server, sso_sign_in(chromium, sso_server, person.login, person.password))

    assert login["user_id"] == account.user_id
    assert user_count(sso_server) == users
    # The password still works beside single sign-on.
    assert client.login_with_email(address).status_code == 200


# --- what a hostile provider account tries -----------------------------------------------------


def test_an_address_of_a_domain_not_allowed_is_refused_with_a_page_naming_it(sso_server, chromium):
    person = sso_server.idp.add_person(
        "outsider", "eve.outsider@gmail.com", given="Eve", family="O"
    )
    users = user_count(sso_server)

    sign_in = sso_sign_in(chromium, sso_server, person.login, person.password)

    assert sign_in.login_token is None
    assert sign_in.status == 400
    refusal = REFUSED_ADDRESS.split("{", 1)[0]
    assert refusal in sign_in.page_text
    assert "the domain gmail.com is not among the domains allowed on this server" in (
        sign_in.page_text
    )
    assert user_count(sso_server) == users
    missing = admin_get(
        sso_server, f"/_synapse/admin/v2/users/{quote(expected_user_id(sso_server, person.email))}"
    )
    assert missing.status_code == 404


def test_an_unverified_address_is_refused(sso_server, chromium):
    address = "victor.unverified@ac-paris.fr"
    person = sso_server.idp.add_person("vunverified", address, verified=False)
    users = user_count(sso_server)

    sign_in = sso_sign_in(chromium, sso_server, person.login, person.password)

    assert sign_in.login_token is None
    assert UNVERIFIED_EMAIL.format(address=address) in sign_in.page_text
    assert user_count(sso_server) == users


def test_a_provider_that_sends_no_verification_claim_is_trusted_by_default(sso_server, chromium):
    # ProConnect vouches for its addresses and sends no email_verified claim.
    person = sso_server.idp.add_person("pcagent", "paul.connect@ac-paris.fr", verified=None)

    sign_in = sso_sign_in(chromium, sso_server, person.login, person.password)

    assert signed_in(sso_server, sign_in)["user_id"] == expected_user_id(sso_server, person.email)


def test_with_verification_required_a_missing_claim_is_refused(sso_only_server, chromium):
    address = "nora.noclaim@ac-paris.fr"
    person = sso_only_server.idp.add_person("nnoclaim", address, verified=None)
    users = user_count(sso_only_server)

    sign_in = sso_sign_in(chromium, sso_only_server, person.login, person.password)

    assert sign_in.login_token is None
    assert UNVERIFIED_EMAIL.format(address=address) in sign_in.page_text
    assert user_count(sso_only_server) == users
    # A verified address of the same provider still signs in.
    verified = sso_only_server.idp.add_person("vclaim", "vera.claim@ac-paris.fr")
    again = sso_sign_in(chromium, sso_only_server, verified.login, verified.password)
    assert signed_in(sso_only_server, again)["user_id"] == expected_user_id(
        sso_only_server, verified.email
    )


def test_an_address_whose_id_is_anothers_never_enters_that_account(sso_server, chromium):
    # anne-interieur@x.gouv.fr and anne@interieur-x.gouv.fr both derive anne-interieur-x.gouv.fr.
    client = sso_server.synapse.client()
    owner = client.register_account("anne-interieur@x.gouv.fr")
    look_alike = "anne@interieur-x.gouv.fr"
    assert localpart_for(parse_email(look_alike)) == owner.user_id[1:].split(":")[0]
    person = sso_server.idp.add_person("alookalike", look_alike, given="Anne", family="Autre")

    login = signed_in(sso_server, sso_sign_in(chromium, sso_server, person.login, person.password))

    assert login["user_id"] == expected_user_id(sso_server, look_alike, "-2")
    assert bound_emails(sso_server, owner.user_id) == ["anne-interieur@x.gouv.fr"]
    assert bound_emails(sso_server, login["user_id"]) == [look_alike]


def test_name_claims_cannot_forge_the_domain_tag_or_the_external_marker(sso_server, chromium):
    # A forged tag and marker, fullwidth brackets, a bidi override, a name past any length:
    # whatever the provider says, the name is the one an agent could pick, or the address's.
    for n, (given, family) in enumerate(
        [
            ("Chef [interieur.gouv.fr] (external)", "Z" * 300),
            ("Jean", "Dupont \uff3binterieur.gouv.fr\uff3d"),
            ("Jean", "Dupont \u202eRF.vuog.rueiretni"),
        ]
    ):
        address = f"forge.noms{n}@ac-paris.fr"
        person = sso_server.idp.add_person(f"fnoms{n}", address, given=given, family=family)

        login = signed_in(
            sso_server, sso_sign_in(chromium, sso_server, person.login, person.password)
        )

        client = MatrixClient(sso_server.url, sso_server.synapse.layout.mail_dir)
        shown = client.display_name(login["user_id"], token=login["access_token"])
        assert shown == display_name_for(parse_email(address))


def test_a_provider_account_without_an_address_is_refused(sso_server, chromium):
    person = sso_server.idp.add_person("nomail", "")  # LemonLDAP::NG sends no empty claim
    users = user_count(sso_server)

    sign_in = sso_sign_in(chromium, sso_server, person.login, person.password)

    assert sign_in.login_token is None
    assert NO_EMAIL.format(claim="email") in sign_in.page_text
    assert user_count(sso_server) == users


def test_a_deactivated_agent_cannot_come_back_through_the_provider(sso_server, chromium):
    address = "denis.depart@ac-paris.fr"
    person = sso_server.idp.add_person("ddepart", address, given="Denis", family="Depart")
    user_id = signed_in(
        sso_server, sso_sign_in(chromium, sso_server, person.login, person.password)
    )["user_id"]
    deactivate = requests.post(
        f"{sso_server.url}/_synapse/admin/v1/deactivate/{quote(user_id)}",
        json={"erase": False},
        headers={"Authorization": f"Bearer {sso_server.admin_token}"},
        timeout=TIMEOUT,
    )
    assert deactivate.status_code == 200, deactivate.text
    users = user_count(sso_server)

    sign_in = sso_sign_in(chromium, sso_server, person.login, person.password)

    # Synapse still knows the provider's subject: its page refuses the deactivated account,
    # and nothing new is made for that address.
    assert sign_in.login_token is None
    assert sign_in.status == 403
    assert "deactivated" in sign_in.page_text.lower(), sign_in.page_text
    assert user_count(sso_server) == users


def test_a_login_token_is_good_once(sso_server, chromium):
    person = sso_server.idp.add_person("tonce", "tom.once@ac-paris.fr")
    sign_in = sso_sign_in(chromium, sso_server, person.login, person.password)
    signed_in(sso_server, sign_in)

    replay = token_login(sso_server, sign_in.login_token)

    assert replay.status_code == 403
    assert replay.json()["errcode"] == "M_FORBIDDEN"


# --- agents through single sign-on only -------------------------------------------------------


def password_login(server: SsoServer, user: str, password: str = PASSWORD) -> requests.Response:
    body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}}
    return requests.post(
        f"{server.url}/_matrix/client/v3/login", json={**body, "password": password}, timeout=30
    )


def test_with_password_login_off_an_agents_right_password_is_refused(sso_only_server, chromium):
    client = sso_only_server.synapse.client()
    address = "agathe.agent@ac-paris.fr"
    agent = Person.register(client, address)  # an account from before the switch

    by_email = client.login_with_email(address)
    by_id = password_login(sso_only_server, agent.user_id)

    for refused in (by_email, by_id):
        assert refused.status_code == 403, refused.text
        assert refused.json()["errcode"] == "M_FORBIDDEN"
    # The same agent signs into that very account through the provider.
    person = sso_only_server.idp.add_person("aagent", address, given="Agathe", family="Agent")
    sign_in = sso_sign_in(chromium, sso_only_server, person.login, person.password)
    assert signed_in(sso_only_server, sign_in)["user_id"] == agent.user_id


def test_with_password_login_off_an_invited_external_keeps_the_email_flow(sso_only_server):
    client = sso_only_server.synapse.client()
    host = Person.register(client, "hugo.hote@ac-paris.fr")
    room = host.new_room(name="Partenaires", preset="private_chat", initial_state=OPEN_TO_EXTERNALS)
    assert host.invite_by_email(room, "eric.externe@example.com").status_code == 200

    external = client.register_account("eric.externe@example.com")

    right = client.login_with_email("eric.externe@example.com")
    assert right.status_code == 200, right.text
    assert right.json()["user_id"] == external.user_id
    wrong = password_login(sso_only_server, external.user_id, PASSWORD + "x")
    assert wrong.status_code == 403
    flows = {f["type"] for f in client.get("/_matrix/client/v3/login").json()["flows"]}
    assert {"m.login.sso", "m.login.password"} <= flows


def test_with_password_login_off_the_consoles_service_account_renews_its_token(sso_only_server):
    layout = sso_only_server.synapse.layout
    token = layout.service_token.read_text().strip()
    logout = requests.post(
        f"{sso_only_server.url}/_matrix/client/v3/logout",
        headers={"Authorization": f"Bearer {token}"},
        timeout=TIMEOUT,
    )
    assert logout.status_code == 200, logout.text

    renewed = sso_only_server.synapse.admin_token()  # logs in again with its password

    assert renewed != token
    sso_only_server.admin_token = renewed  # for the tests after this one
    assert admin_get(sso_only_server, "/_synapse/admin/v2/users?limit=1").status_code == 200


# --- how long it takes -------------------------------------------------------------------------


def test_sso_sign_in_time_against_a_password_login(sso_server, chromium):
    """Prints the end-to-end time of a single sign-on (browser, provider's page, token
    exchange) beside a password login, measured in the same run; asserts nothing on time."""
    address = "mesure.temps@ac-paris.fr"
    client = sso_server.synapse.client()
    client.register_account(address)
    person = sso_server.idp.add_person("mtemps", address, given="Mesure", family="Temps")
    signed_in(sso_server, sso_sign_in(chromium, sso_server, person.login, person.password))

    sso_times, password_times = [], []
    for _ in range(3):
        began = time.perf_counter()
        signed_in(sso_server, sso_sign_in(chromium, sso_server, person.login, person.password))
        sso_times.append(time.perf_counter() - began)
        began = time.perf_counter()
        assert client.login_with_email(address, PASSWORD).status_code == 200
        password_times.append(time.perf_counter() - began)
    sso, password = min(sso_times), min(password_times)
    print(
        f"\nSSO sign-in end to end (browser + LemonLDAP::NG + m.login.token): {sso:.2f} s; "
        f"password login: {password:.3f} s; ratio {sso / password:.0f}x (best of 3 each)"
    )


# --- the settings ------------------------------------------------------------------------------


def _auth_problems(auth: dict, **top) -> list[str]:
    with pytest.raises(SettingsError) as refused:
        parse_settings({"auth": auth, **top}, "test")
    return refused.value.problems


OIDC = {"issuer": "https://idp.example.org", "client_id": "c", "client_secret_file": "/etc/s"}


def test_password_login_can_be_off_only_with_single_sign_on():
    assert _auth_problems({"password_login": False}) == [
        "auth: password_login: can be false only when auth.oidc is set (nobody could sign in)"
    ]
    assert not parse_settings(
        {"auth": {"oidc": OIDC, "password_login": False}}, "t"
    ).auth.password_login


def test_an_unreadable_or_empty_client_secret_stops_the_start(tmp_path):
    def settings(path):
        oidc = {**OIDC, "client_secret_file": str(path)}
        return parse_settings({"auth": {"oidc": oidc}}, "t")

    missing = tmp_path / "missing"
    assert check_secret_files(settings(missing)) == [
        f"auth.oidc.client_secret_file: {missing} cannot be read: No such file or directory"
    ]
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert check_secret_files(settings(empty)) == [
        f"auth.oidc.client_secret_file: {empty} is empty"
    ]
    good = tmp_path / "secret"
    good.write_text("s3cret")
    assert check_secret_files(settings(good)) == []


def test_oidc_settings_are_refused_with_their_key():
    assert _auth_problems({"oidc": {**OIDC, "client_secret_file": "secret"}}) == [
        "auth.oidc.client_secret_file: must be an absolute path"
    ]
    assert _auth_problems({"oidc": {**OIDC, "scopes": ["email"]}}) == [
        "auth.oidc.scopes: must include 'openid' (OpenID Connect)"
    ]
    assert _auth_problems({"oidc": {**OIDC, "issuer": "idp.example.org"}}) == [
        "auth.oidc.issuer: 'idp.example.org' is not an http(s) URL"
    ]
    assert _auth_problems({"oidc": {**OIDC, "claims": {"mail": "email"}}}) == [
        "auth.oidc.claims.mail: unknown key"
    ]
    production = {
        "mode": "production",
        "public_baseurl": "https://chat.example.org/",
        "clamav": {"signatures": "freshclam"},
    }
    assert _auth_problems({"oidc": {**OIDC, "issuer": "http://idp.example.org"}}, **production) == [
        "auth.oidc.issuer: production mode needs an https:// issuer"
    ]
