# SPDX-License-Identifier: AGPL-3.0-or-later
"""Accounts expire unless renewed: a Synapse with the module and its own SMTP sink, validity on
with a one-hour period (reminders 50 and 30 minutes before expiry, deactivation 10 minutes
after it) and a check every second.  Time is driven by setting an account's expiry through the
module's admin endpoint, never by waiting; every request goes over real HTTP."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from urllib.parse import quote

import pytest
import requests
from console_helpers import Console, first_operator, user_path
from harness import evaluation_settings, free_port
from matrix_helpers import SideSynapse, plain_text
from oidc_fixtures import running_sso_server, signed_in, sso_sign_in
from synapse.module_api.errors import ConfigError
from werkzeug.serving import make_server

from appliance.config.layout import Layout
from appliance.config.settings import SettingsError
from appliance.synapse_module.accounts.validity_config import ValidityConfig, parse_validity
from appliance.synapse_module.accounts.validity_schedule import Schedule

VALIDITY = "/_synapse/client/appliance/v1/account_validity"
PERIOD_MS = 3600 * 1000
MINUTE_MS = 60 * 1000
EXPIRED = "ORG_MATRIX_EXPIRED_ACCOUNT"
pytest_plugins = ["oidc_fixtures"]

_RENEW_LINK = re.compile(r"https?://\S+/_synapse/client/appliance/v1/renew\?token=\S+")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def side(request, tmp_path_factory):
    """The Synapse under test, on SQLite and on PostgreSQL (the claims are SQL both speak)."""
    state_dir = tmp_path_factory.mktemp(f"validity-{request.param}")
    database: dict = {}
    if request.param == "postgresql":
        cluster = request.getfixturevalue("postgres_cluster")
        name = f"validity_{time.time_ns()}"
        cluster.create_database(name)
        database = {
            "database": {
                "engine": "postgresql",
                "host": "127.0.0.1",
                "port": cluster.port,
                "name": name,
                "user": "synapse",
                "pool_max": 5,
            }
        }
    synapse_port = free_port()
    settings = evaluation_settings(
        state_dir,
        public_baseurl=f"http://127.0.0.1:{synapse_port}/",
        synapse={"listen": {"port": synapse_port}, **database},
        accounts={
            "validity": {
                "period": "1h",
                "reminders": ["50m", "30m"],
                "deactivate_after": "10m",
                "exempt": [r"@svc\..*"],
                "check_interval": "1s",
            }
        },
    )

    def server_notices_on(config: dict) -> None:
        # The renderer sets no server notices; an operator may, and its user must not expire.
        config["server_notices"] = {"system_mxid_localpart": "notices"}

    layout = Layout.from_settings(settings, state_dir)
    with SideSynapse(settings, layout, edit_config=server_notices_on) as running:
        yield running


@pytest.fixture(scope="module")
def admin(side) -> str:
    return side.admin_token()


@pytest.fixture(scope="module")
def client(side):
    return side.client()


def call(side, admin, method: str, path: str = "", body: dict | None = None) -> requests.Response:
    return requests.request(
        method,
        side.url + VALIDITY + path,
        json=body,
        headers={"Authorization": f"Bearer {admin}"},
        timeout=30,
    )


def account(side, admin, user_id: str) -> dict:
    response = call(side, admin, "GET", "/" + quote(user_id))
    assert response.status_code == 200, response.text
    return response.json()


def set_expiry(side, admin, user_id: str, expiration_ts: int) -> None:
    body = {"action": "set", "expiration_ts": expiration_ts}
    response = call(side, admin, "POST", "/" + quote(user_id), body)
    assert response.status_code == 200, response.text


def run_check(side, admin) -> None:
    response = call(side, admin, "POST", "/check", {})
    assert response.status_code == 200, response.text


def now_ms() -> int:
    return int(time.time() * 1000)


_count = 0


def new_account(client, prefix: str = "agent"):
    global _count
    _count += 1
    return client.register_account(f"{prefix}.{_count}.{time.time_ns()}@ac-paris.fr")


def renewal_mails(client, address: str) -> list:
    return [m for m in client.mails_to(address) if "Renew" in (m["Subject"] or "")]


def wait_for_renewal_mails(client, address: str, count: int, timeout: float = 30.0) -> list:
    deadline = time.monotonic() + timeout
    while True:
        mails = renewal_mails(client, address)
        if len(mails) >= count:
            return mails
        assert time.monotonic() < deadline, f"{len(mails)} renewal mails to {address}, not {count}"
        time.sleep(0.1)


def renewal_link(mail) -> str:
    found = _RENEW_LINK.findall(plain_text(mail))
    assert found, plain_text(mail)
    return found[0]


def test_registration_sets_the_expiry_one_period_ahead(side, admin, client):
    before = now_ms()
    agent = new_account(client)
    after = now_ms()

    state = account(side, admin, agent.user_id)["account"]
    assert before + PERIOD_MS <= state["expiration_ts"] <= after + PERIOD_MS
    assert state["expired"] is False and state["exempt"] is False
    assert client.whoami(agent.access_token).status_code == 200


def test_each_reminder_is_mailed_once_by_the_scheduled_check(side, admin, client):
    agent = new_account(client)
    set_expiry(side, admin, agent.user_id, now_ms() + 40 * MINUTE_MS)  # the 50-minute one

    [first] = wait_for_renewal_mails(client, agent.address, 1)  # sent by the 1 s loop
    run_check(side, admin)
    run_check(side, admin)
    assert len(renewal_mails(client, agent.address)) == 1
    assert account(side, admin, agent.user_id)["account"]["reminders_sent"] == 1
    assert "expire le" in plain_text(first) and "expires on" in plain_text(first)

    set_expiry_keeping_count = now_ms() + 20 * MINUTE_MS  # now the 30-minute one is due too
    # "set" starts a new period (an admin's change), so both reminders are due again: one mail.
    set_expiry(side, admin, agent.user_id, set_expiry_keeping_count)
    mails = wait_for_renewal_mails(client, agent.address, 2)
    run_check(side, admin)
    assert len(renewal_mails(client, agent.address)) == len(mails) == 2
    assert account(side, admin, agent.user_id)["account"]["reminders_sent"] == 2


def test_an_expired_account_gets_403_expired_and_its_link_renews_it_without_login(
    side, admin, client
):
    agent = new_account(client)
    set_expiry(side, admin, agent.user_id, now_ms() - 1000)

    refused = client.whoami(agent.access_token)
    assert refused.status_code == 403, refused.text
    assert refused.json()["errcode"] == EXPIRED
    assert refused.json()["error"]

    [mail] = wait_for_renewal_mails(client, agent.address, 1)
    link = renewal_link(mail)
    http = requests.Session()
    page = http.get(link, timeout=30)  # what a mail scanner does: renews nothing
    assert page.status_code == 200 and '<form method="post"' in page.text
    assert client.whoami(agent.access_token).status_code == 403

    token = link.split("token=", 1)[1]
    before = now_ms()
    renewed = http.post(link.split("?", 1)[0], data={"token": token}, timeout=30)
    assert renewed.status_code == 200 and 'data-state="renewed"' in renewed.text
    assert client.whoami(agent.access_token).status_code == 200
    assert account(side, admin, agent.user_id)["account"]["expiration_ts"] >= before + PERIOD_MS

    again = http.post(link.split("?", 1)[0], data={"token": token}, timeout=30)
    assert again.status_code == 404 and 'data-state="invalid"' in again.text  # single use
    assert http.get(link, timeout=30).status_code == 404


def test_an_account_long_expired_is_deactivated_and_the_log_says_so(side, admin, client):
    agent = new_account(client)
    recent = new_account(client)
    set_expiry(side, admin, agent.user_id, now_ms() - 11 * MINUTE_MS)  # past deactivate_after
    set_expiry(side, admin, recent.user_id, now_ms() - 5 * MINUTE_MS)  # not yet

    run_check(side, admin)

    users = f"{side.url}/_synapse/admin/v2/users/"
    headers = {"Authorization": f"Bearer {admin}"}

    def deactivated(user_id: str) -> bool:
        found = requests.get(users + quote(user_id), headers=headers, timeout=30)
        return found.json()["deactivated"]

    # The scheduled check may have claimed it first and still be deactivating: wait for it.
    deadline = time.monotonic() + 30
    while not deactivated(agent.user_id):
        assert time.monotonic() < deadline, f"{agent.user_id} was not deactivated in 30 s"
        time.sleep(0.1)
    assert not deactivated(recent.user_id)
    state = account(side, admin, agent.user_id)
    assert state["account"]["deactivated_ts"] is not None
    assert "deactivated" in [entry["event"] for entry in state["log"]]
    # Its renewal link (mailed when it expired) no longer works.
    for mail in renewal_mails(client, agent.address):
        assert requests.get(renewal_link(mail), timeout=30).status_code == 404


def test_exempt_accounts_never_expire(side, admin, client):
    robot = new_account(client, prefix="svc")
    state = account(side, admin, robot.user_id)["account"]
    assert state["exempt"] is True and state["expiration_ts"] is None

    refused = call(side, admin, "POST", "/" + quote(robot.user_id), {"action": "renew"})
    assert refused.status_code == 403 and refused.json()["errcode"] == "M_FORBIDDEN"
    run_check(side, admin)
    assert client.whoami(robot.access_token).status_code == 200
    assert renewal_mails(client, robot.address) == []

    for always in ("appliance-console", "notices"):
        user_id = f"@{always}:{side.settings.server_name}"
        assert account(side, admin, user_id)["account"]["exempt"] is True


def test_admin_renew_and_extend(side, admin, client):
    agent = new_account(client)
    set_expiry(side, admin, agent.user_id, now_ms() - 1000)
    assert client.whoami(agent.access_token).status_code == 403

    before = now_ms()
    renew = call(side, admin, "POST", "/" + quote(agent.user_id), {"action": "renew"})
    assert renew.status_code == 200, renew.text
    renewed = renew.json()["account"]["expiration_ts"]
    assert renewed >= before + PERIOD_MS
    assert client.whoami(agent.access_token).status_code == 200

    extend = call(side, admin, "POST", "/" + quote(agent.user_id), {"action": "extend", "days": 2})
    assert extend.json()["account"]["expiration_ts"] == renewed + 2 * 86400 * 1000

    soon = call(side, admin, "GET", "", None)
    assert soon.status_code == 400 and soon.json()["errcode"] == "M_INVALID_PARAM"
    listed = requests.get(
        side.url + VALIDITY,
        params={"expiring_within_ms": 3 * 86400 * 1000},
        headers={"Authorization": f"Bearer {admin}"},
        timeout=30,
    ).json()["accounts"]
    assert agent.user_id in [row["user_id"] for row in listed]

    bad = call(side, admin, "POST", "/" + quote(agent.user_id), {"action": "extend", "days": 0})
    assert bad.status_code == 400 and bad.json()["errcode"] == "M_INVALID_PARAM"
    stranger = call(side, agent.access_token, "GET", "/" + quote(agent.user_id))
    assert stranger.status_code == 403 and stranger.json()["errcode"] == "M_FORBIDDEN"


# --- the console --------------------------------------------------------------------------------


@pytest.fixture
def side_console(console_app, side, admin) -> Console:
    """The console (real CSRF), talking to this module's Synapse with its service token."""
    console_app.config.update(
        WTF_CSRF_ENABLED=True,
        SYNAPSE_URL=side.url,
        SERVICE_TOKEN_FILE=str(side.layout.service_token),
    )
    return Console(console_app)


def test_console_shows_each_expiry_and_lists_those_expiring_soon(side, admin, client, side_console):
    soon, later = new_account(client), new_account(client)
    set_expiry(side, admin, soon.user_id, now_ms() + 86400 * 1000)
    set_expiry(side, admin, later.user_id, now_ms() + 10 * 86400 * 1000)
    expected = account(side, admin, soon.user_id)["account"]["expiration_ts"]

    detail = side_console.get(user_path(soon.user_id))
    assert f'data-expiry="{expected}"' in detail and "data-validity" in detail
    listed = side_console.get(f"/users/?q={soon.user_id.split(':')[0][1:]}")
    assert f'data-expiry="{expected}"' in listed

    expiring = side_console.get("/expiry/?days=2")
    assert soon.user_id in expiring and later.user_id not in expiring
    assert later.user_id in side_console.get("/expiry/?days=11")


def test_console_renews_and_extends_with_csrf_and_audit(side, admin, client, side_console):
    agent = new_account(client)
    set_expiry(side, admin, agent.user_id, now_ms() - 1000)
    assert client.whoami(agent.access_token).status_code == 403

    forged = side_console.client.post(f"/expiry/{quote(agent.user_id)}/renew", data={})
    assert forged.status_code in (302, 400)
    assert client.whoami(agent.access_token).status_code == 403  # no CSRF token: nothing done

    before = now_ms()
    renewed = side_console.post(f"/expiry/{quote(agent.user_id)}/renew")
    assert renewed.status_code == 302
    assert client.whoami(agent.access_token).status_code == 200
    expiration = account(side, admin, agent.user_id)["account"]["expiration_ts"]
    assert expiration >= before + PERIOD_MS

    extended = side_console.post(f"/expiry/{quote(agent.user_id)}/extend", days="3")
    assert extended.status_code == 302
    state = account(side, admin, agent.user_id)
    assert state["account"]["expiration_ts"] == expiration + 3 * 86400 * 1000
    assert state["log"][0]["event"] == "extended by 3 days"

    refused = side_console.post(f"/expiry/{quote(agent.user_id)}/extend", days="0")
    assert refused.status_code == 302
    assert (
        account(side, admin, agent.user_id)["account"]["expiration_ts"]
        == (state["account"]["expiration_ts"])
    )

    audit = side_console.get("/audit/")
    assert "user.validity.renew" in audit and "user.validity.extend" in audit


# --- settings -----------------------------------------------------------------------------------


def test_validity_is_off_by_default_and_rendered_only_when_on(tmp_path):
    off = evaluation_settings(tmp_path)
    assert off.accounts.validity.period is None
    assert off.accounts.validity.module_config() is None
    on = evaluation_settings(tmp_path, accounts={"validity": {"period": "365d"}})
    assert on.accounts.validity.module_config() == {
        "period_seconds": 365 * 86400,
        "reminders_seconds": [28 * 86400, 7 * 86400, 86400],
        "deactivate_after_seconds": 90 * 86400,
        "exempt": [],
        "check_seconds": 1800,
    }


@pytest.mark.parametrize(
    ("validity", "problem"),
    [
        ({"period": "a year"}, "accounts.validity.period: 'a year' is not a duration"),
        ({"period": "30d", "reminders": ["28d", "31d"]}, "reminders.1: 31d must be"),
        ({"period": "30d", "deactivate_after": "-1d"}, "accounts.validity.deactivate_after:"),
        ({"period": "30d", "exempt": ["@bot-(.*"]}, "accounts.validity.exempt.0:"),
        ({"period": "30d", "renew_on_login": True}, "accounts.validity.renew_on_login: unknown"),
    ],
)
def test_bad_validity_settings_are_refused_with_their_key(tmp_path, validity, problem):
    with pytest.raises(SettingsError) as refused:
        evaluation_settings(tmp_path, accounts={"validity": validity})
    assert any(problem in line for line in refused.value.problems), refused.value.problems


def test_the_module_refuses_a_bad_block_naming_the_key():
    with pytest.raises(ConfigError) as refused:
        parse_validity({"period_seconds": 60, "reminders_seconds": [120]})
    assert refused.value.path == ("account_validity", "reminders_seconds", "0")


# --- single sign-on renews ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sso_validity_server(tmp_path_factory):
    """LemonLDAP::NG and a Synapse with single sign-on and account validity on."""
    state_dir = tmp_path_factory.mktemp("sso-validity")
    accounts = {"validity": {"period": "1h", "reminders": ["30m"], "check_interval": "1h"}}
    with running_sso_server(state_dir, extra={"accounts": accounts}) as server:
        yield server


def test_signing_in_through_sso_renews_an_expired_account_and_a_password_login_does_not(
    sso_validity_server, chromium
):
    server = sso_validity_server
    login = f"renew{time.time_ns()}"
    person = server.idp.add_person(login, f"{login}@ac-paris.fr", given="Rémi", family="Roux")
    first = signed_in(server, sso_sign_in(chromium, server, person.login, person.password))
    user_id, token = first["user_id"], first["access_token"]
    set_expiry(server.synapse, server.admin_token, user_id, now_ms() - 1000)
    whoami = f"{server.url}/_matrix/client/v3/account/whoami"
    headers = {"Authorization": f"Bearer {token}"}
    refused = requests.get(whoami, headers=headers, timeout=30)
    assert refused.status_code == 403 and refused.json()["errcode"] == EXPIRED

    # A password login (the console's service account sets one for this agent) renews nothing.
    reset = requests.put(
        f"{server.url}/_synapse/admin/v2/users/{quote(user_id)}",
        json={"password": "Correct-Horse-Battery-42", "logout_devices": False},
        headers={"Authorization": f"Bearer {server.admin_token}"},
        timeout=30,
    )
    assert reset.status_code == 200, reset.text
    password_login = requests.post(
        f"{server.url}/_matrix/client/v3/login",
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user_id},
            "password": "Correct-Horse-Battery-42",
        },
        timeout=30,
    )
    assert password_login.status_code == 200, password_login.text
    assert requests.get(whoami, headers=headers, timeout=30).status_code == 403

    before = now_ms()
    signed_in(server, sso_sign_in(chromium, server, person.login, person.password))
    assert requests.get(whoami, headers=headers, timeout=30).status_code == 200
    state = account(server.synapse, server.admin_token, user_id)
    assert state["account"]["expiration_ts"] >= before + PERIOD_MS
    assert state["log"][0]["event"].startswith("renewed by sign-in")


def test_checks_running_at_once_mail_a_reminder_once(side, admin, client):
    agent = new_account(client)
    set_expiry(side, admin, agent.user_id, now_ms() + 40 * MINUTE_MS)

    # Four checks at once, beside the scheduled one: each claims the mail before sending it.
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda _: run_check(side, admin), range(4)))
    run_check(side, admin)

    assert len(wait_for_renewal_mails(client, agent.address, 1)) == 1
    assert len(renewal_mails(client, agent.address)) == 1
    log = account(side, admin, agent.user_id)["log"]
    assert [entry["event"] for entry in log].count("reminded 1") == 1


# --- the schedule (pure rules) ------------------------------------------------------------------

DAY_MS = 86400 * 1000
TCHAP = ValidityConfig(
    period_seconds=365 * 86400,
    reminders_seconds=(28 * 86400, 7 * 86400, 86400),
    deactivate_after_seconds=90 * 86400,
)


@pytest.mark.parametrize(
    ("days_left", "due"),
    [(60, 0), (28, 1), (27.5, 1), (7, 2), (3, 2), (1, 3), (0, 3), (-10, 3)],
)
def test_reminders_fall_due_28_7_and_1_day_before_expiry(days_left, due):
    expiration = 1_000 * DAY_MS
    now = expiration - int(days_left * DAY_MS)
    assert Schedule(TCHAP).reminders_due(expiration, now) == due


def test_links_work_until_deactivation_or_a_reminder_span_after_expiry():
    expiration = 1_000 * DAY_MS
    assert Schedule(TCHAP).deactivation_ms(expiration) == expiration + 90 * DAY_MS
    assert Schedule(TCHAP).link_expiry_ms(expiration) == expiration + 90 * DAY_MS
    never = replace(TCHAP, deactivate_after_seconds=None)
    assert Schedule(never).deactivation_ms(expiration) is None
    assert Schedule(never).link_expiry_ms(expiration) == expiration + 28 * DAY_MS


@pytest.fixture
def served_console(side_console, console_app) -> Iterator[str]:
    """The same console app served over HTTP on a free loopback port, for a browser."""
    server = make_server("127.0.0.1", free_port(), console_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def test_an_operator_renews_an_expired_account_in_a_browser(
    side, admin, client, console_app, served_console, chromium
):
    agent = new_account(client)
    set_expiry(side, admin, agent.user_id, now_ms() - 1000)
    operator = first_operator(console_app)
    context = chromium.new_context(locale="en-GB")
    context.set_default_timeout(20_000)
    try:
        page = context.new_page()
        page.goto(f"{served_console}/login")
        page.fill("#username", operator["username"])
        page.fill("#password", operator["password"])
        page.click("form button[type=submit]:has-text('Log in')")
        page.wait_for_url(lambda url: "/login" not in url)
        page.goto(served_console + user_path(agent.user_id))
        section = page.locator("section[data-validity]")
        assert "expired" in section.inner_text()

        before = now_ms()
        section.locator("button:has-text('Renew for a period')").click()
        page.wait_for_selector("p.flash.success")
        assert "renewed" in page.locator("p.flash.success").inner_text()
        shown = int(
            page.locator("section[data-validity] dd[data-expiry]").get_attribute("data-expiry")
        )
    finally:
        context.close()
    assert shown >= before + PERIOD_MS
    assert client.whoami(agent.access_token).status_code == 200


def test_with_validity_off_the_console_says_so_and_the_user_page_has_no_expiry(console, synapse):
    user_id = synapse.create_user(f"off-{time.time_ns()}", "Agent Off [ac-paris.fr]")
    assert "accounts.validity.period is not set" in console.get("/expiry/")
    assert "data-validity" not in console.get(user_path(user_id))
