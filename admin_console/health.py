"""The health page: every service and resource green or red with the reason.

It only talks to services over the network (and reads the disk), so it keeps working, and
says why, when Synapse or clamd is down.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from flask import Blueprint, current_app, jsonify, render_template
from flask_login import login_required

from appliance import health

bp = Blueprint("health", __name__, url_prefix="/health")


def _service_token() -> str | None:
    try:
        return Path(current_app.config["SERVICE_TOKEN_FILE"]).read_text().strip()
    except OSError:
        return None


def run_checks() -> list[health.Check]:
    # Read here: the probes run in worker threads, outside the application context.
    config = dict(current_app.config)
    token = _service_token()
    probes = [
        lambda: health.check_synapse(config["SYNAPSE_URL"], token),
        lambda: health.check_clamd(
            config["CLAMD_HOST"], config["CLAMD_PORT"], config["CLAMAV_SIGNATURES"]
        ),
        lambda: health.check_smtp(config["SMTP_HOST"], config["SMTP_PORT"]),
        lambda: health.check_disk(Path(config["STATE_DIR"])),
        health.check_memory,
        health.check_cpu,
    ]
    # In parallel: one service timing out must not make the page wait for the sum.
    with ThreadPoolExecutor(max_workers=len(probes)) as pool:
        return list(pool.map(lambda probe: probe(), probes))


@bp.get("/")
@login_required
def page():
    checks = run_checks()
    return render_template(
        "health.html",
        checks=checks,
        all_ok=all(check.ok for check in checks),
        evaluation=current_app.config["CLAMAV_SIGNATURES"] == "evaluation",
    )


@bp.get("/checks.json")
@login_required
def checks_json():
    checks = run_checks()
    return jsonify(
        ok=all(check.ok for check in checks),
        checks=[
            {"name": c.name, "ok": c.ok, "summary": c.summary, "details": c.details}
            for c in checks
        ],
    )
