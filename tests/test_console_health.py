# SPDX-License-Identifier: AGPL-3.0-or-later
"""Health history (real samples, SVG charts), warnings (disk, TLS expiry), and the security
rules every page of the console follows."""

from __future__ import annotations

import re
import socket
import ssl
import threading
from pathlib import Path

import pytest
from console_helpers import self_signed_certificate
from cryptography import x509

from admin_console import charts, db, health_history, health_warnings
from appliance.operations import health

PAGES = (
    "/health/",
    "/users/",
    "/users/invite",
    "/domains/",
    "/rooms/",
    "/media/",
    "/audit/",
    "/operators/",
    "/operators/password",
)


def test_a_real_sample_is_stored_once_per_minute_and_drawn(app, console, appliance):
    sample = health_history.take_sample(app.config["SYNAPSE_URL"], Path(app.config["STATE_DIR"]))
    assert sample.synapse_ms is not None and 0 <= sample.memory_percent <= 100
    with app.app_context():
        connection = db.get_db()
        health_history.store(connection, sample)
        health_history.store(connection, sample)  # a second worker, same minute: ignored
        stored = health_history.last_day(connection)
    assert stored == [sample]
    assert point_counts(console.get("/health/")) == [1, 1, 1, 1]  # CPU, memory, disk, Synapse
    later = health_history.Sample(sample.minute + 1, 50.0, 50.0, 50.0, 12.0)
    with app.app_context():
        health_history.store(db.get_db(), later)
    page = console.get("/health/")
    assert point_counts(page) == [2, 2, 2, 2]
    # Each chart's text equivalent: what a screen reader says instead of the line.
    summaries = re.findall(r"<p class=\"chart-summary\" data-chart-summary>([^<]*)</p>", page)
    low = min(sample.cpu_percent, 50.0)
    assert f"lowest {low:.0f} %, highest {max(sample.cpu_percent, 50.0):.0f} %" in summaries[0]
    assert len(summaries) == 4


def point_counts(page: str) -> list[int]:
    return [len(points.split()) for points in re.findall(r'<polyline points="([^"]*)"', page)]


def test_synapse_down_samples_as_a_gap():
    assert health_history.synapse_response_ms("http://127.0.0.1:9") is None
    chart = charts.line_chart(
        "t", "ms", [(100, 1.0), (101, 2.0), (102, None), (103, 3.0), (104, 4.0)], end_minute=104
    )
    assert len(chart.segments) == 2 and chart.latest == 4.0


def test_samples_older_than_a_day_are_dropped(app):
    now_minute = 30_000_000
    with app.app_context():
        connection = db.get_db()
        health_history.store(connection, health_history.Sample(now_minute - 2000, 1, 1, 1, 1))
        health_history.store(connection, health_history.Sample(now_minute, 2, 2, 2, 2))
        minutes = [s.minute for s in health_history.last_day(connection, now=now_minute * 60)]
    assert minutes == [now_minute]


def test_disk_warning_above_ninety_percent(app):
    with app.test_request_context():
        full = health.Check("disk", False, "almost full", {"percent": 93.0})
        roomy = health.Check("disk", True, "fine", {"percent": 40.0})
        assert any("93" in w for w in health_warnings.warnings([full]))
        assert not any("disk" in w for w in health_warnings.warnings([roomy]))


def test_stale_signatures_are_warned_from_the_clamd_checks_own_reading(app):
    app.config["CLAMAV_SIGNATURES"] = "freshclam"
    with app.test_request_context():
        stale = health.Check("clamd", False, "stale", {"age_seconds": 3 * 86400})
        fresh = health.Check("clamd", True, "fine", {"age_seconds": 3600})
        assert any("check freshclam" in w for w in health_warnings.warnings([stale]))
        assert not any("freshclam" in w for w in health_warnings.warnings([fresh]))


def test_one_signature_hash_cache_per_directory(tmp_path):
    from admin_console.media.signatures import signature_files

    assert signature_files(str(tmp_path)) is signature_files(str(tmp_path))
    assert signature_files(str(tmp_path)) is not signature_files(str(tmp_path / "other"))


def _tls_server(tmp_path: Path, days: int) -> tuple[int, str]:
    """A local TLS server whose certificate expires in `days`; returns (port, CA file)."""
    cert_file, key_file = self_signed_certificate(tmp_path, days, [x509.DNSName("localhost")])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        connection, _ = listener.accept()
        try:
            with context.wrap_socket(connection, server_side=True):
                pass
        except (ssl.SSLError, OSError):
            pass
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1], str(cert_file)


@pytest.mark.parametrize("days, warned", [(5, True), (60, False)])
def test_tls_certificate_expiry_warning(app, tmp_path, days, warned):
    port, ca_file = _tls_server(tmp_path, days)
    with app.test_request_context():
        message = health_warnings.tls_warning(f"https://localhost:{port}/", ca_file)
    assert (message is not None) == warned
    if warned:
        assert f"expires in {days - 1} day(s)" in message or f"expires in {days} day(s)" in message


def test_unverifiable_certificate_is_a_warning_too(app, tmp_path):
    port, _ = _tls_server(tmp_path, 60)
    with app.test_request_context():
        message = health_warnings.tls_warning(f"https://localhost:{port}/")  # system CAs only
    assert message and "cannot be checked" in message


@pytest.mark.parametrize("path", PAGES)
def test_every_page_needs_login(app, path):
    response = app.test_client().get(path)
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


@pytest.mark.parametrize("path", PAGES)
def test_every_page_is_strict_and_keeps_the_token_server_side(console, admin_token, path):
    response = console.client.get(path)
    text = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "unsafe-inline" not in response.headers["Content-Security-Policy"]
    assert (
        "<script" not in text and not re.search(r"\sstyle=", text) and " on" + "click" not in text
    )
    assert admin_token not in text and admin_token not in str(response.headers)


def test_every_form_that_posts_carries_a_csrf_token(console):
    for path in PAGES:
        text = console.get(path)
        for form in re.findall(r'<form method="post".*?</form>', text, re.S):
            assert 'name="csrf_token"' in form, (path, form[:120])


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
