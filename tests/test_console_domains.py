# SPDX-License-Identifier: AGPL-3.0-or-later
"""The allowed-domains page against the module's endpoints: pages and account counts, bulk add,
remove, live."""

from __future__ import annotations

import re

import requests
from console_helpers import unique, user_path

DOMAINS_ENDPOINT = "/_synapse/client/appliance/v1/domains"


def allowed(synapse) -> set[str]:
    return {row["entry"] for row in synapse.call("GET", DOMAINS_ENDPOINT)["domains"]}


def test_list_shows_entries_with_account_counts(console, synapse):
    tag = unique("count")
    domain = f"{tag}.fr"
    console.post("/domains/", entries=domain)
    for n in range(2):
        synapse.create_user(f"a{n}-{tag}", f"Agent {n} [{domain}]", f"agent{n}@{domain}")
    synapse.create_user(f"other-{tag}", f"Other [{domain}]", f"other@x{domain}")  # not of it
    page = console.get(f"/domains/?q={domain}")
    row = page[page.index(f'data-domain="{domain}"') :]
    row = row[: row.index("</tr>")]
    assert ">2</a>" in row


def test_bulk_add_reports_each_entry_and_is_live(console, synapse):
    tag = unique("bulk")
    response = console.post(
        "/domains/", entries=f"{tag}.fr\n*.{tag}.gouv.fr\n*gouv.fr\nnot a domain\n{tag}.fr"
    )
    page = response.get_data(as_text=True)
    assert {f"{tag}.fr", f"*.{tag}.gouv.fr"} <= allowed(synapse)
    assert page.count('class="ok"') == 2  # the duplicate line counts once
    assert "a wildcard must be followed by a dot" in page
    assert "invalid allowlist entry &#39;not a domain&#39;" in page
    # Live: Synapse accepts a registration mail for the new domain at once.
    token = requests.post(
        synapse.url + "/_matrix/client/v3/register/email/requestToken",
        timeout=30,
        json={"email": f"someone@{tag}.fr", "client_secret": "secret123", "send_attempt": 1},
    )
    assert token.status_code == 200, token.text


def test_remove_asks_first_and_is_audited(console, synapse):
    domain = f"{unique('rm')}.fr"
    console.post("/domains/", entries=domain)
    console.confirm(f"/domains/remove/{domain}")
    assert domain not in allowed(synapse)
    audit = console.get(f"/audit/?q={domain}")
    assert "domain.remove" in audit and "domain.add" in audit


def test_the_list_is_searched_and_paged(console, monkeypatch):
    from admin_console.domains import views

    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    tag = unique("paged")
    entries = [f"{tag}-{n}.fr" for n in range(3)]
    console.post("/domains/", entries="\n".join(entries))
    first = console.get(f"/domains/?q={tag}")
    assert first.count("data-domain=") == 2 and "1–2 of 3" in first
    following = re.search(r'rel="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    second = console.get(following)
    assert second.count("data-domain=") == 1 and "3–3 of 3" in second
    assert all(f'data-domain="{entry}"' in first + second for entry in entries)
    assert "No allowed domain matches this search." in console.get(f"/domains/?q={unique('no')}")


def test_a_users_kind_is_the_modules_record_not_todays_allowlist(console, synapse):
    """The user page shows what the module recorded when the account was made: removing a
    domain later does not turn its agents into externals, nor adding one its externals into
    agents (an operator decides what becomes of them)."""
    tag = unique("kind")
    domain = f"{tag}.fr"
    console.post("/domains/", entries=domain)
    agent_id = synapse.create_user(tag, f"Someone {tag}", f"someone@{domain}")
    assert ">agent<" in console.get(user_path(agent_id))
    console.confirm(f"/domains/remove/{domain}")
    guest_id = synapse.create_user(f"{tag}-g", f"Guest {tag}", f"guest@{domain}")
    assert ">agent<" in console.get(user_path(agent_id))
    assert 'class="tag external"' in console.get(user_path(guest_id))
    console.post("/domains/", entries=domain)
    assert 'class="tag external"' in console.get(user_path(guest_id))
