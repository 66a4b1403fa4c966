# SPDX-License-Identifier: AGPL-3.0-or-later
"""Mail for every new account (accounts/new_account_mail.py): which accounts get Synapse's
email pusher from the module, once, on which process.

Synapse's pusher pool stands apart here (its calls are recorded, as the main process would
make them); tests/test_new_account_mail.py runs the whole path in a real Synapse, through
single sign-on and the Admin API, down to the mail.
"""

from __future__ import annotations

from unittest.mock import AsyncMock, Mock

import pytest
from synapse.app.generic_worker import GenericWorkerStore
from synapse.storage import DataStore
from synapse.types import UserID, UserInfo

from appliance.synapse_module.accounts.new_account_mail import NewAccountMail
from appliance.synapse_module.accounts.new_account_mail_store import NewAccountMailStore
from appliance.synapse_module.synapse_internals import (
    EMAIL_PUSHER,
    SynapseInternals,
    store_problems,
)

AGENT = "@claire.martin-ac-paris.fr:appliance.test"
ADDRESS = "claire.martin@ac-paris.fr"


def user_info(user_id: str, *, guest: bool = False, appservice: str | None = None) -> UserInfo:
    """What Synapse's store says of a just-registered account."""
    return UserInfo(
        user_id=UserID.from_string(user_id),
        appservice_id=appservice,
        consent_server_notice_sent=None,
        consent_version=None,
        consent_ts=None,
        user_type=None,
        creation_ts=1_700_000_000,
        is_admin=False,
        is_deactivated=False,
        is_guest=guest,
        is_shadow_banned=False,
        approved=True,
        locked=False,
        suspended=False,
    )


def concern(api, pusher_pool: Mock | None = None) -> NewAccountMail:
    """The concern as the module wires it, on the process of api (its tables made by the main
    process's store)."""
    api.get_userinfo_by_id.side_effect = lambda user_id: user_info(user_id)
    api._hs = Mock()
    api._hs.get_pusherpool.return_value = pusher_pool or Mock(add_or_update_pusher=AsyncMock())
    store = NewAccountMailStore(api)
    store.start()
    return NewAccountMail(api, store, SynapseInternals(api), for_new_users=True)


@pytest.fixture
def pool() -> Mock:
    return Mock(add_or_update_pusher=AsyncMock())


@pytest.fixture
def main(api, pool) -> NewAccountMail:
    return concern(api, pool)


def bind(database, user_id: str, address: str) -> None:
    """An address bound as Synapse's add_threepid stores it (before the callback runs)."""
    database.connection.conn.execute(
        "INSERT INTO user_threepids (user_id, medium, address, validated_at, added_at)"
        " VALUES (?, 'email', ?, 0, 0)",
        (user_id, address),
    )


def added(pool: Mock) -> list[tuple[str, str]]:
    calls = pool.add_or_update_pusher.await_args_list
    for call in calls:  # Synapse's own values, the address as pushkey and device name
        assert {k: call.kwargs[k] for k in EMAIL_PUSHER} == EMAIL_PUSHER
        assert call.kwargs["device_display_name"] == call.kwargs["pushkey"]
    return [(call.kwargs["user_id"], call.kwargs["pushkey"]) for call in calls]


def test_a_new_account_gets_its_pusher_when_its_address_is_bound_and_only_once(
    main, pool, database, run
):
    run(main.on_user_registration(AGENT))
    assert added(pool) == []  # no address yet (single sign-on binds it after registering)

    bind(database, AGENT, ADDRESS)
    run(main.on_address_bound(AGENT, "email", ADDRESS))
    assert added(pool) == [(AGENT, ADDRESS)]

    # A second address, the pass, a sign-in: nothing more from the module.
    run(main.on_address_bound(AGENT, "email", "c.martin@ac-paris.fr"))
    run(main.catch_up())
    assert added(pool) == [(AGENT, ADDRESS)]
    assert database.rows("SELECT user_id FROM appliance_new_account_mail") == []


def test_an_account_made_before_or_without_an_address_gets_no_pusher(main, pool, database, run):
    older = "@ancien-ac-paris.fr:appliance.test"
    bind(database, older, "ancien@ac-paris.fr")
    run(main.on_address_bound(older, "email", "ancien@ac-paris.fr"))  # an address changed

    bot = "@robot:appliance.test"
    run(main.on_user_registration(bot))
    run(main.on_address_bound(bot, "msisdn", "33612345678"))
    run(main.catch_up())

    assert added(pool) == []
    # The account without an address is still waiting: its first address will bring the mails.
    assert database.rows("SELECT user_id FROM appliance_new_account_mail") == [(bot,)]


def test_guests_and_application_service_users_are_not_recorded(main, api, database, run):
    guest, ghost = "@guest1:appliance.test", "@_bridge_ghost:appliance.test"
    kinds = {guest: {"guest": True}, ghost: {"appservice": "bridge"}}
    api.get_userinfo_by_id.side_effect = lambda user_id: user_info(user_id, **kinds[user_id])

    run(main.on_user_registration(guest))
    run(main.on_user_registration(ghost))

    assert database.rows("SELECT user_id FROM appliance_new_account_mail") == []


def test_an_address_bound_on_a_worker_gets_its_pusher_from_the_main_process(
    main, pool, worker_api, database, run
):
    on_worker = concern(worker_api)
    run(on_worker.on_user_registration(AGENT))
    bind(database, AGENT, ADDRESS)
    run(on_worker.on_address_bound(AGENT, "email", ADDRESS))
    worker_pool = worker_api._hs.get_pusherpool.return_value
    assert worker_pool.add_or_update_pusher.await_count == 0  # a worker writes no pusher

    run(main.catch_up())
    run(main.catch_up())

    assert added(pool) == [(AGENT, ADDRESS)]


def test_a_failed_addition_is_tried_again_by_the_pass(main, pool, database, run):
    pool.add_or_update_pusher.side_effect = [RuntimeError("database busy"), None]
    run(main.on_user_registration(AGENT))
    bind(database, AGENT, ADDRESS)

    run(main.on_address_bound(AGENT, "email", ADDRESS))
    assert database.rows("SELECT user_id FROM appliance_new_account_mail") == [(AGENT,)]
    run(main.catch_up())

    assert pool.add_or_update_pusher.await_count == 2
    assert database.rows("SELECT user_id FROM appliance_new_account_mail") == []


def test_a_registration_goes_on_when_the_account_cannot_be_recorded(main, database, run):
    database.outage = RuntimeError("the database went away")
    assert run(main.on_user_registration(AGENT)) is None  # logged, not raised


def test_only_the_main_process_has_a_pass(api, worker_api):
    for process_api, passes in ((api, 1), (worker_api, 0)):
        concern(process_api).register()
        assert process_api.looping_background_call.call_count == passes
        process_api.register_account_validity_callbacks.assert_called_once()
        process_api.register_third_party_rules_callbacks.assert_called_once()


def test_only_the_main_process_store_can_write_a_pusher():
    # Why the pusher is added on the main process: a worker's store has no add_pusher.
    assert store_problems(DataStore, main_process=True) == []
    assert store_problems(GenericWorkerStore, main_process=True) == [
        "the data store GenericWorkerStore has no method add_pusher"
    ]


def email_pusher(database, user_id: str, address: str, *, present: bool = True) -> None:
    """The email pusher of the address, as Synapse's store keeps it (or deletes it)."""
    conn = database.connection.conn
    conn.execute("DELETE FROM pushers WHERE user_name = ? AND pushkey = ?", (user_id, address))
    if present:
        conn.execute(
            "INSERT INTO pushers (id, user_name, profile_tag, kind, app_id, app_display_name,"
            " device_display_name, pushkey, ts, lang, data) VALUES ((SELECT COALESCE(MAX(id),"
            " 0) + 1 FROM pushers), ?, '', 'email', 'm.email', 'Email Notifications', ?, ?, 0,"
            " 'fr', '{}')",
            (user_id, address, address),
        )


def test_the_mails_follow_a_changed_address_but_not_a_deactivated_account(
    main, pool, database, run
):
    email_pusher(database, AGENT, ADDRESS)  # the person turned the mails on
    new = "claire.martin@education.gouv.fr"
    run(main.on_address_removed(AGENT, "email", ADDRESS))  # the Admin API unbinds the old one
    email_pusher(database, AGENT, ADDRESS, present=False)  # then Synapse deletes its pusher
    bind(database, AGENT, new)
    run(main.on_address_bound(AGENT, "email", new))
    assert added(pool) == [(AGENT, new)]
    email_pusher(database, AGENT, new)  # what the pusher pool wrote

    # Deactivation unbinds the address (recorded as above), then says it deactivated.
    run(main.on_address_removed(AGENT, "email", new))
    assert database.rows("SELECT user_id FROM appliance_new_account_mail") == [(AGENT,)]
    run(main.on_deactivation(AGENT, True, True))
    assert database.rows("SELECT user_id FROM appliance_new_account_mail") == []
