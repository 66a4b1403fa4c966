# SPDX-License-Identifier: AGPL-3.0-or-later
"""The health page: every service and resource green or red with the reason.

It only talks to services over the network (and reads the disk), so it keeps working, and
says why, when Synapse or clamd is down.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from flask import Blueprint, abort, current_app, jsonify, render_template, request
from flask_babel import gettext as _

from admin_console import clock, db, health_history, health_week
from admin_console.auth import require_login
from admin_console.charts import line_chart
from admin_console.health_warnings import warnings
from appliance.operations import health

bp = Blueprint("health", __name__, url_prefix="/health")
bp.before_request(require_login)
# The page reloads itself (a meta refresh: the CSP allows no script), so a service going down
# shows within seconds.
REFRESH_SECONDS = 5


def run_checks() -> list[health.Check]:
    # Read here: the probes run in worker threads, outside the application context.
    config = dict(current_app.config)
    probes = [
        # No token: Synapse's version endpoint is public, and only the console's Synapse client
        # (synapse_admin.client) reads the service token.
        lambda: health.check_synapse(config["SYNAPSE_URL"]),
        lambda: health.check_clamd(
            config["CLAMD_HOST"],
            config["CLAMD_PORT"],
            config["CLAMAV_SIGNATURES"],
            config.get("CLAMAV_DATABASE_DIR"),
        ),
        lambda: health.check_content_scanner(config["CONTENT_SCANNER_URL"]),
        lambda: health.check_smtp(config["SMTP_HOST"], config["SMTP_PORT"]),
        lambda: health.check_disk(Path(config["STATE_DIR"])),
        health.check_memory,
        health.check_cpu,
    ]
    # coturn (turn.enabled), asked for a STUN binding as a client would.
    if config.get("TURN"):
        turn = config["TURN"]
        probes.append(lambda: health.check_turn(turn["host"], turn["port"]))
    if config.get("MAIL_QUEUE"):
        # Production's local MTA (mail.local_mta): how many mails wait for the relay.
        probes.append(health.check_mail_queue)
    # Synapse's workers (synapse.workers.preset), each on its own listener.
    probes += [_worker_probe(name, url) for name, url in config.get("SYNAPSE_WORKERS", {}).items()]
    # In parallel: one service timing out must not make the page wait for the sum.
    with ThreadPoolExecutor(max_workers=len(probes)) as pool:
        return list(pool.map(lambda probe: probe(), probes))


def _worker_probe(name: str, url: str):
    return lambda: replace(health.check_synapse(url), name=f"synapse-{name}")


def charts() -> list:
    samples = health_history.last_day(db.get_db())
    end = int(time.time() // 60)

    def series(attribute: str) -> list[tuple[int, float | None]]:
        return [(sample.minute, getattr(sample, attribute)) for sample in samples]

    return [
        line_chart(_("CPU"), "%", series("cpu_percent"), end, 100),
        line_chart(_("Memory"), "%", series("memory_percent"), end, 100),
        line_chart(_("Disk"), "%", series("disk_percent"), end, 100),
        line_chart(_("Synapse response time"), "ms", series("synapse_ms"), end),
    ]


@bp.get("/")
def page():
    checks = run_checks()
    return render_template(
        "health.html",
        checks=checks,
        all_ok=all(check.ok for check in checks),
        evaluation=current_app.config["CLAMAV_SIGNATURES"] == "evaluation",
        warnings=warnings(checks),
        charts=charts(),
        refresh=REFRESH_SECONDS,
    )


@bp.get("/history")
def history():
    """A week of the 30 days kept: charts and the same figures day by day."""
    number = request.args.get("week", 0, type=int)
    if not 0 <= number < health_week.WEEKS:
        abort(404)
    shown = health_week.week(db.get_db(), number, clock.now())
    return render_template("health_history.html", week=shown, weeks=health_week.WEEKS)


@bp.get("/checks.json")
def checks_json():
    checks = run_checks()
    return jsonify(
        ok=all(check.ok for check in checks),
        checks=[
            {"name": c.name, "ok": c.ok, "summary": c.summary, "details": c.details} for c in checks
        ],
    )
