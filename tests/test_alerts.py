# SPDX-License-Identifier: AGPL-3.0-or-later
"""Alerts reach someone: the shared appliance's real clamd is stopped and brought back by
`appliance up`, and the console's alert loop mails the operators who opted in, through the real
SMTP sink, once when clamd turns red, reminders while it stays red, once when it recovers; each
mail is in the audit log. Two loops (as two gunicorn workers would run) share the console's
database: only the lease holder mails.
"""

from __future__ import annotations

from email.header import decode_header, make_header

from console_helpers import PASSWORD, Console, unique
from matrix_media_helpers import clamd_stopped, wait_until

from admin_console import audit, db, leases
from admin_console.alerts import store
from admin_console.alerts.runner import LEASE, Runner
from admin_console.operators import store as operators

ROUND_SECONDS = 0.5
REMINDER_SECONDS = 2.0
MAIL_WAIT_SECONDS = 90


def decoded_subject(message) -> str:
    """The subject as read: unfolded (a long header is folded over lines) and decoded (French
    and English: non-ASCII, so RFC 2047-encoded on the wire)."""
    return " ".join(str(make_header(decode_header(message["Subject"] or ""))).split())


def mails(mail_sink, to: str, subject: str) -> list:
    return [
        message
        for message in mail_sink.messages()
        if to in (message["To"] or "") and subject in decoded_subject(message)
    ]


def wait_for_mail(mail_sink, to: str, subject: str) -> None:
    what = f"a mail {subject!r} to {to}"
    wait_until(lambda: mails(mail_sink, to, subject), what, MAIL_WAIT_SECONDS)


def alert_entries(app, action: str, target: str) -> list[audit.store.Entry]:
    with app.app_context():
        entries, _ = audit.store.search(db.get_db(), action, limit=1000)
    return [e for e in entries if e.action == action and e.target == target]


def test_an_operator_opts_in_and_out_on_the_operators_page_with_an_audit_entry(app, console):
    address = f"{unique('ops')}@ac-paris.fr"
    assert console.post("/operators/alerts", email=address).status_code == 302
    page = console.get("/operators/")
    assert address in page and 'data-alerts="on"' in page
    with app.app_context():
        assert store.recipients(db.get_db()) == [address]
    assert console.post("/operators/alerts", email="not an address").status_code == 400
    assert console.post("/operators/alerts", email="").status_code == 302
    with app.app_context():
        assert store.recipients(db.get_db()) == []
        entries, _ = audit.store.search(db.get_db(), "operator.alerts")
    assert [e.detail for e in entries] == ["off", f"on, to {address}"]


def test_clamd_down_is_mailed_once_reminded_and_its_recovery_mailed_once(
    app, console, appliance, mail_sink
):
    app.config.update(ALERT_CHECK_SECONDS=ROUND_SECONDS, ALERT_REMINDER_SECONDS=REMINDER_SECONDS)
    address = f"{unique('oncall')}@ac-paris.fr"
    assert console.post("/operators/alerts", email=address).status_code == 302
    # A second operator who did not opt in gets nothing.
    with app.app_context():
        operators.create(db.get_db(), "quiet", PASSWORD)
    Console(app, "quiet", PASSWORD)
    workers = [Runner(app, ROUND_SECONDS, holder=f"worker-{n}").start() for n in (1, 2)]
    try:
        # Both loops have run while clamd is green: nothing about clamd yet.
        wait_until(lambda: _lease(app)[0] is not None, "a loop taking the lease")
        assert not mails(mail_sink, address, "clamd")
        with clamd_stopped(appliance):
            wait_for_mail(mail_sink, address, "ALERTE clamd en panne / ALERT clamd is red")
            wait_for_mail(mail_sink, address, "REMINDER clamd is still red")
            appliance.up()  # the repair an operator makes: starts what is down
        wait_for_mail(mail_sink, address, "RECOVERED clamd is green again")
        # Two more rounds (each renews the lease), for a late duplicate to show.
        renewed = _lease(app)[1]
        wait_until(lambda: _lease(app)[1] >= renewed + 2 * ROUND_SECONDS, "two more rounds")
    finally:
        for worker in workers:
            worker.stop()
    assert len(mails(mail_sink, address, "ALERT clamd")) == 1
    assert len(mails(mail_sink, address, "RECOVERED clamd")) == 1
    assert not [m for m in mail_sink.messages() if "quiet" in (m["To"] or "")]
    recovered = mails(mail_sink, address, "RECOVERED clamd")[0]
    assert "clamd" in recovered.get_payload() and "green again" in recovered.get_payload()
    opened = alert_entries(app, "alert.opened", "clamd")
    assert len(opened) == 1 and opened[0].operator == "alerts" and opened[0].ok
    assert "mailed to 1 operator(s)" in opened[0].detail
    assert alert_entries(app, "alert.reminder", "clamd")
    assert len(alert_entries(app, "alert.recovered", "clamd")) == 1
    with app.app_context():
        assert "clamd" not in store.open_incidents(db.get_db())


def _lease(app) -> tuple[str | None, float]:
    """The alert lease's holder and expiry (which each of its rounds moves on)."""
    with app.app_context():
        row = (
            db.get_db()
            .execute("SELECT holder, expires_at FROM leases WHERE name = ?", (LEASE,))
            .fetchone()
        )
    return (row["holder"], row["expires_at"]) if row else (None, 0.0)


def test_a_lease_has_one_holder_until_it_expires(app):
    with app.app_context():
        connection = db.get_db()
        assert leases.acquire(connection, "x", holder="a", seconds=10, now=100)
        assert not leases.acquire(connection, "x", holder="b", seconds=10, now=105)
        assert leases.acquire(connection, "x", holder="a", seconds=10, now=108)  # renewed
        assert not leases.acquire(connection, "x", holder="b", seconds=10, now=117)
        assert leases.acquire(connection, "x", holder="b", seconds=10, now=118.5)  # a died
        assert not leases.acquire(connection, "x", holder="a", seconds=10, now=119)
