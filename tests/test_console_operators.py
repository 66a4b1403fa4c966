"""Operators, the login lockout, the audit log and its CSV export, and the two languages."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from test_console_auth import csrf_token, login
from test_console_users import Console, app, console, unique  # noqa: F401 (fixtures)

OPERATOR_PASSWORD = "Operator-Passw0rd-1"
TRANSLATIONS = Path(__file__).resolve().parent.parent / "admin_console" / "translations"


def add_operator(console: Console, name: str) -> None:
    response = console.post(
        "/operators/", username=name, password=OPERATOR_PASSWORD, confirm=OPERATOR_PASSWORD
    )
    assert response.status_code == 302, response.get_data(as_text=True)


def test_added_operator_logs_in_and_removed_one_cannot(app, console):
    name = unique("op")
    add_operator(console, name)
    other = app.test_client()
    assert login(other, name, OPERATOR_PASSWORD).status_code == 302
    operator_id = console.get("/operators/").split(f'data-operator="{name}"')[1]
    operator_id = operator_id.split("/operators/")[1].split("/remove")[0]
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


def test_csv_cells_cannot_be_formulas(app, console):
    from admin_console import db
    from admin_console.audit import store

    with app.app_context():
        store.add(db.get_db(), "admin", "test.formula", '=HYPERLINK("x")', True, "+1")
    rows = list(
        csv.reader(
            io.StringIO(console.client.get("/audit/export.csv?q=HYPERLINK").get_data(as_text=True))
        )
    )
    assert rows[1][3] == '\'=HYPERLINK("x")' and rows[1][5] == "'+1"


def test_language_from_the_browser_then_the_operators_choice(app):
    client = app.test_client()
    french = client.get("/login", headers={"Accept-Language": "fr-FR,fr;q=0.9,en;q=0.5"})
    assert '<html lang="fr">' in french.get_data(as_text=True)
    assert "Se connecter" in french.get_data(as_text=True)
    token = csrf_token(french.get_data(as_text=True))
    client.post("/language", data={"csrf_token": token, "lang": "en", "next": "/login"})
    english = client.get("/login", headers={"Accept-Language": "fr"}).get_data(as_text=True)
    assert '<html lang="en">' in english and "Log in" in english


def test_every_page_is_translated_in_french(app, console):
    console.client.post("/language", data={"csrf_token": console.token, "lang": "fr"})
    for path, french in (
        ("/users/", "Utilisateurs"),
        ("/domains/", "Domaines autorisés"),
        ("/rooms/", "Salons"),
        ("/media/", "Médias et antivirus"),
        ("/audit/", "Exporter en CSV"),
        ("/operators/", "Opérateurs"),
        ("/health/", "Santé"),
    ):
        assert french in console.get(path), path


def test_compiled_catalogue_matches_the_po_file():
    for po_path in TRANSLATIONS.glob("*/LC_MESSAGES/messages.po"):
        with open(po_path, "rb") as po, open(po_path.with_suffix(".mo"), "rb") as mo:
            source, compiled = read_po(po), read_mo(mo)
        expected = {m.id: m.string for m in source if m.id and m.string and not m.fuzzy}
        assert {
            m.id: m.string for m in compiled if m.id
        } == expected, (
            f"{po_path.with_suffix('.mo')} is stale: run pybabel compile -d {TRANSLATIONS}"
        )
        untranslated = [m.id for m in source if m.id and not m.string]
        assert not untranslated, f"untranslated in {po_path}: {untranslated[:5]}"
