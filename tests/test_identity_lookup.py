# SPDX-License-Identifier: AGPL-3.0-or-later
"""Tchap's domain lookup, `GET /_matrix/identity/api/v1/info`, served by the module."""

from __future__ import annotations

import pytest
from matrix_helpers import IDENTITY_INFO_PATH as INFO


@pytest.fixture
def this_server(appliance) -> dict:
    return {"hs": appliance.settings.server_name}


def info(client, address: str, medium: str = "email"):
    return client.identity_info(address, medium)


@pytest.mark.parametrize(
    "address",
    [
        "pierre.dupont@ac-paris.fr",
        "Pierre.Dupont@AC-PARIS.FR",
        "agent@dgfip.gouv.fr",
        "a@b.c.gouv.fr",
    ],
)
def test_an_allowed_address_belongs_to_this_server(client, this_server, address):
    response = info(client, address)

    assert (response.status_code, response.json()) == (200, this_server)


@pytest.mark.parametrize(
    "address, shown_domain",
    [
        ("agent@evil.com", "evil.com"),
        ("agent@gouv.fr", "gouv.fr"),  # *.gouv.fr admits subdomains only
        ("agent@ecole.fr", "ecole.fr"),
        ("agent@xn--cole-9oa.fr", "xn--cole-9oa.fr (école.fr)"),
    ],
)
def test_another_domain_requires_an_invitation_and_is_named(
    client, this_server, address, shown_domain
):
    response = info(client, address)

    assert response.status_code == 200
    body = response.json()
    assert body["hs"] == this_server["hs"] and body["requires_invite"] is True
    assert f"the domain {shown_domain} is not among the domains allowed" in body["reason"]


@pytest.mark.parametrize(
    "address, reason",
    [
        ("agent", "no '@'"),
        ("agent@evil.com@ac-paris.fr", "several '@'"),
        ("agent@ac-paris.fr ", "whitespace"),
        ("agent@ac-paris.fr.", "must not end with a dot"),
        ('"agent"@ac-paris.fr', "quoted"),
        ("agent(x)@ac-paris.fr", "comments"),
        ("agent@ac-pa\u200bris.fr", "invisible"),
        ("agent@ac-p\u0430ris.fr", "mixes writing systems"),
        ("agent@ac-paris%2efr", "percent"),
        ("agent@\uff41\uff43-paris.fr", "write the address as agent@ac-paris.fr"),
        ("agent@école.fr", "write the address as agent@xn--cole-9oa.fr"),
        (f"{'a' * 64}@{'b' * 63}.{'c' * 63}.{'d' * 40}.gouv.fr", "longer than 255 characters"),
    ],
)
def test_an_address_that_cannot_be_used_gets_the_reason(client, address, reason):
    response = info(client, address)

    assert (response.status_code, response.json()["errcode"]) == (400, "M_INVALID_PARAM")
    assert reason in response.json()["error"]


def test_parameters_are_checked(client):
    cases = [
        (client.get(INFO, params={"address": "a@ac-paris.fr"}), 400, "M_MISSING_PARAM"),
        (client.get(INFO, params={"medium": "email"}), 400, "M_MISSING_PARAM"),
        (info(client, "+33123456789", medium="msisdn"), 400, "M_INVALID_PARAM"),
        (
            client.get(INFO + "?medium=email&address=a@ac-paris.fr&address=b@evil.com"),
            400,
            "M_INVALID_PARAM",
        ),
        (client.get(INFO + "?medium=email&address=%FF@ac-paris.fr"), 400, "M_INVALID_PARAM"),
    ]
    for response, status, errcode in cases:
        assert (response.status_code, response.json()["errcode"]) == (status, errcode), response.url


def test_the_answer_does_not_tell_whether_an_account_exists(client, this_server):
    client.register_account("helene.blanc@ac-paris.fr")

    assert info(client, "helene.blanc@ac-paris.fr").json() == this_server
    assert info(client, "nobody.yet@ac-paris.fr").json() == this_server


def test_it_agrees_with_registration(client):
    """What the lookup admits is exactly what requestToken accepts."""
    for address in (
        "agent.one@ac-paris.fr",
        "agent.two@evil.com",
        "agent.three@x.gouv.fr",
        "a@gouv.fr",
    ):
        admitted = info(client, address).json().get("requires_invite") is not True
        accepted = client.request_token("register", address).status_code == 200
        assert admitted == accepted, address
