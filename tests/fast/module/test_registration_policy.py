# SPDX-License-Identifier: AGPL-3.0-or-later
"""The registration policy's callbacks (accounts/registration.py), called as Synapse calls them,
with the real allowlist and invitations on Synapse's schema.

Each test sends what a hostile (or merely careless) client would make Synapse pass on: an
address of another domain, a look-alike spelling, a chosen username, no address at all."""

from __future__ import annotations

import pytest
from synapse.module_api.errors import SynapseError
from synapse.spam_checker_api import RegistrationBehaviour

from appliance.addresses.email_address import parse_email
from appliance.synapse_module.accounts.domain_store import MAX_AGE_SECONDS
from appliance.synapse_module.accounts.registration import EMAIL_STAGE, RegistrationPolicy
from appliance.synapse_module.externals.invitations import new_token
from appliance.synapse_module.rooms.kinds import ACCESS_RULES, JOIN_RULES, THIRD_PARTY_INVITE

AGENT = "pierre.dupont@ac-paris.fr"
OUTSIDER = "jean.martin@gmail.com"
ORIGIN = [("User-Agent", "Element"), ("IP", "127.0.0.1")]  # a client request's info


@pytest.fixture
def policy(api, allowlist, invitations) -> RegistrationPolicy:
    registered = RegistrationPolicy(api, allowlist.current, invitations.standing)
    registered.register()
    return registered


def uia(address: str) -> dict:
    """The results of a completed registration whose email stage proved address."""
    return {EMAIL_STAGE: {"medium": "email", "address": address, "validated_at": 1}}


@pytest.fixture
def invite(api, room, invitations, run):
    """Invite an address by email into a new room open to externals, as the identity service
    does: the invitation stored, and the room's m.room.third_party_invite sent."""

    def invite(address: str):
        builder = room()
        builder.add(ACCESS_RULES, "", {"rule": "unrestricted"})
        builder.add(JOIN_RULES, "", {"join_rule": "invite"})
        invitation = run(
            invitations.create(builder.creator, parse_email(address), builder.room_id, new_token())
        )
        content = invitations.third_party_invite_content(parse_email(address))
        builder.add(THIRD_PARTY_INVITE, invitation.token, content)
        return builder, invitation

    return invite


def test_the_policy_registers_its_callbacks_with_synapse(api, policy):
    api.register_password_auth_provider_callbacks.assert_called_once_with(
        is_3pid_allowed=policy.is_3pid_allowed,
        get_username_for_registration=policy.get_username_for_registration,
        get_displayname_for_registration=policy.get_displayname_for_registration,
    )
    api.register_spam_checker_callbacks.assert_called_once_with(
        check_registration_for_spam=policy.check_registration_for_spam
    )


@pytest.mark.parametrize("registration", [True, False])
def test_an_allowed_domain_may_register_and_be_added(policy, run, registration):
    assert run(policy.is_3pid_allowed("email", AGENT, registration)) is True
    assert run(policy.is_3pid_allowed("email", "anne@sg.dgfip.gouv.fr", registration)) is True


@pytest.mark.parametrize(
    "medium, address",
    [
        ("email", OUTSIDER),  # another domain, nobody invited it
        ("email", "pierre@ac-paris.fr.evil.example"),  # the allowed domain as a prefix
        ("email", "pierre@ｅｖｉｌ.ac-paris.fr"),  # fullwidth: a look-alike spelling
        ("email", "pierre@AC-PARIS.FR\u200b"),  # a zero-width space after the domain
        ("email", "not an address"),
        ("msisdn", "33612345678"),  # only email identifies an agent
    ],
)
def test_anything_else_is_refused(policy, run, medium, address):
    assert run(policy.is_3pid_allowed(medium, address, True)) is False
    assert run(policy.is_3pid_allowed(medium, address, False)) is False


def test_an_invitation_admits_its_address_to_register_only(policy, invite, run):
    invite(OUTSIDER)

    assert run(policy.is_3pid_allowed("email", OUTSIDER, True)) is True
    # never to be bound to an existing account: that would turn an agent into its owner
    assert run(policy.is_3pid_allowed("email", OUTSIDER, False)) is False
    assert run(policy.is_3pid_allowed("email", "other@gmail.com", True)) is False


def test_an_invitation_withdrawn_in_its_room_admits_nobody(policy, invite, run):
    builder, invitation = invite(OUTSIDER)
    builder.add(THIRD_PARTY_INVITE, invitation.token, {})  # the room revoked it

    assert run(policy.is_3pid_allowed("email", OUTSIDER, True)) is False


def test_an_allowlist_that_cannot_be_confirmed_refuses_everyone(
    policy, run, database, clock, allowlist
):
    database.outage = RuntimeError("the database went away")
    clock.now += MAX_AGE_SECONDS + 1
    run(allowlist.refresh())

    assert run(policy.is_3pid_allowed("email", AGENT, True)) is False


def test_the_matrix_id_comes_from_the_address_whatever_the_client_asks(api, policy, run):
    params = {"username": "admin", "password": "hunter2"}
    assert run(policy.get_username_for_registration(uia(AGENT), params)) == (
        "pierre.dupont-ac-paris.fr"
    )
    api.users.add("@pierre.dupont-ac-paris.fr:appliance.test")  # a namesake registered first
    assert run(policy.get_username_for_registration(uia(AGENT), params)) == (
        "pierre.dupont-ac-paris.fr-2"
    )
    assert run(policy.get_username_for_registration({}, params)) is None


def test_the_display_name_says_who_and_where_and_marks_externals(policy, invite, run):
    assert run(policy.get_displayname_for_registration(uia(AGENT), {})) == (
        "Pierre Dupont [ac-paris.fr]"
    )
    invite(OUTSIDER)
    assert run(policy.get_displayname_for_registration(uia(OUTSIDER), {})) == (
        "Jean Martin [gmail.com] (external)"
    )


@pytest.mark.parametrize(
    "threepid, username, request_info, provider",
    [
        (None, "pierre", ORIGIN, None),  # a client registration with no verified address
        (None, "pierre", [], "oidc"),  # a single sign-on registration with no address
        ({"medium": "email", "address": AGENT}, "hacker", ORIGIN, None),  # a chosen name
        ({"medium": "email", "address": OUTSIDER}, "jean.martin-gmail.com", ORIGIN, None),
    ],
)
def test_the_last_gate_denies_what_the_earlier_ones_should_have_stopped(
    policy, run, threepid, username, request_info, provider
):
    verdict = run(policy.check_registration_for_spam(threepid, username, request_info, provider))
    assert verdict is RegistrationBehaviour.DENY


def test_the_last_gate_allows_a_derived_name_and_server_side_registrations(policy, run):
    agent = {"medium": "email", "address": AGENT}
    assert run(policy.check_registration_for_spam(agent, "pierre.dupont-ac-paris.fr", ORIGIN)) is (
        RegistrationBehaviour.ALLOW
    )
    # the shared-secret Admin API (the console's service account): no request, no address
    assert run(policy.check_registration_for_spam(None, "appliance-console", [])) is (
        RegistrationBehaviour.ALLOW
    )


def test_an_invitation_whose_mail_cannot_go_leaves_nothing_behind(
    api, room, invitations, run, database
):
    api.send_mail.side_effect = ConnectionRefusedError("no SMTP relay")
    builder = room()
    builder.add(ACCESS_RULES, "", {"rule": "unrestricted"})

    with pytest.raises(SynapseError) as refused:
        run(invitations.create(builder.creator, parse_email(OUTSIDER), builder.room_id, "tok"))

    assert refused.value.code == 502 and refused.value.errcode == "M_UNKNOWN"
    assert database.rows("SELECT token FROM appliance_external_invitations") == []
