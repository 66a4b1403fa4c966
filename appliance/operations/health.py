# SPDX-License-Identifier: AGPL-3.0-or-later
"""Diagnostics: one check per service or resource, each green or red with a reason.

Used by `appliance status` and by the console's health page. Every check has a short timeout
and never raises: a check that cannot run is itself the red result.
"""

from __future__ import annotations

import shutil
import smtplib
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests

from appliance.antivirus.clamd import ClamdClient, ClamdUnavailable
from appliance.antivirus.signatures import SignatureFiles, current_state, describe_age
from appliance.operations import mail_queue

PROBE_TIMEOUT = 3.0
DISK_WARNING_PERCENT = 90.0
MEMORY_WARNING_PERCENT = 95.0
# freshclam updates several times a day; older signatures mean updates have stopped.
STALE_SIGNATURES_DAYS = 3
# More mails than this waiting in the local MTA's queue: the relay is not taking them.
MAIL_QUEUE_WARNING = 10
# The clamd check's words for clamav.allow_encrypted_archives, as clamd applies it.
ENCRYPTED_REFUSED = "encrypted archives refused (they cannot be scanned)"
ENCRYPTED_ALLOWED = "encrypted archives ALLOWED unscanned"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    summary: str  # one line a sysadmin can act on
    details: dict = field(default_factory=dict)


def check_synapse(base_url: str, token: str | None = None) -> Check:
    try:
        response = requests.get(f"{base_url}/health", timeout=PROBE_TIMEOUT)
    except requests.RequestException as error:
        return Check("synapse", False, f"not reachable at {base_url}: {_reason(error)}")
    if response.status_code != 200 or response.text != "OK":
        return Check(
            "synapse", False, f"/health answered {response.status_code} {response.text[:80]!r}"
        )
    version = _synapse_version(base_url, token)
    return Check("synapse", True, f"healthy, Synapse {version}", {"version": version})


def _synapse_version(base_url: str, token: str | None) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = requests.get(
            f"{base_url}/_synapse/admin/v1/server_version", headers=headers, timeout=PROBE_TIMEOUT
        )
        response.raise_for_status()
        return response.json()["server_version"]
    except (requests.RequestException, ValueError, KeyError):
        return "(version unknown)"


def check_http(name: str, url: str) -> Check:
    """A service that answers any non-5xx status on `url` is up."""
    try:
        response = requests.get(url, timeout=PROBE_TIMEOUT, allow_redirects=False)
    except requests.RequestException as error:
        return Check(name, False, f"not reachable at {url}: {_reason(error)}")
    if response.status_code >= 500:
        return Check(name, False, f"{url} answered {response.status_code}")
    return Check(name, True, f"answers at {url}")


def check_clamd(
    host: str, port: int, signatures: str, database_dir: Path | str | None = None
) -> Check:
    """clamd answers, and which signatures it uses: version and age (red when freshclam's
    are stale, since then new viruses go undetected); whether it refuses encrypted archives,
    from what it says of one (clamav.allow_encrypted_archives)."""
    client = ClamdClient(host, port, timeout=PROBE_TIMEOUT)
    try:
        client.ping()
        state = current_state(client, SignatureFiles(Path(database_dir) if database_dir else None))
    except ClamdUnavailable as error:
        return Check("clamd", False, str(error))
    encrypted_refused = state.encrypted_archives_refused
    age = describe_age(state.age_seconds)
    if signatures == "evaluation":
        label = "EVALUATION signatures (EICAR test string only: real viruses are NOT detected)"
    else:
        label = f"signatures {state.database_version or '(custom only)'}"
    details = {
        "engine": state.engine,
        "signatures": signatures,
        "signature_version": state.version,
        "database_version": state.database_version,
        "published": state.published.isoformat() if state.published else None,
        "age_seconds": state.age_seconds,
        "encrypted_archives": "refused" if encrypted_refused else "allowed",
    }
    summary = f"{state.engine}, {label}, version {state.version[:12]}, {age}, " + (
        ENCRYPTED_REFUSED if encrypted_refused else ENCRYPTED_ALLOWED
    )
    stale = signatures == "freshclam" and (
        state.age_seconds is None or state.age_seconds > STALE_SIGNATURES_DAYS * 86400
    )
    if stale:
        summary += ": signatures are stale, is freshclam running?"
        return Check("clamd", False, summary, details)
    return Check("clamd", True, summary, details)


def check_content_scanner(base_url: str) -> Check:
    """The content scanner answers and can reach clamd (else it refuses every file)."""
    url = f"{base_url}/health"
    try:
        response = requests.get(url, timeout=PROBE_TIMEOUT)
        body = response.json()
    except (requests.RequestException, ValueError) as error:
        return Check("content-scanner", False, f"not reachable at {base_url}: {_reason(error)}")
    if not isinstance(body, dict):
        return Check("content-scanner", False, f"{url} answered {response.status_code}")
    if response.status_code != 200 or not body.get("ok"):
        reason = body.get("error", f"answered {response.status_code}")
        return Check("content-scanner", False, f"refusing every file: {reason}", body)
    stats = body.get("stats", {})
    summary = (
        f"answers at {base_url}, {stats.get('scans', 0)} scans and "
        f"{stats.get('cache_hits', 0)} cached verdicts since start"
    )
    return Check("content-scanner", True, summary, body)


def check_smtp(host: str, port: int) -> Check:
    try:
        with smtplib.SMTP(host, port, timeout=PROBE_TIMEOUT) as smtp:
            code, _ = smtp.noop()
    except (OSError, smtplib.SMTPException) as error:
        return Check("mail", False, f"SMTP server {host}:{port} not reachable: {_reason(error)}")
    if code != 250:
        return Check("mail", False, f"SMTP server {host}:{port} answered NOOP with {code}")
    return Check("mail", True, f"SMTP server {host}:{port} accepts connections")


def check_turn(host: str, port: int | str) -> Check:
    """Whether coturn answers a STUN binding request on UDP, asked with coturn's own client."""
    client = shutil.which("turnutils_stunclient") or "/usr/bin/turnutils_stunclient"
    try:
        result = subprocess.run(
            [client, "-p", str(port), host],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return Check("turn", False, f"TURN server {host}:{port} not reachable: {_reason(error)}")
    if result.returncode != 0 or "reflexive addr" not in result.stdout:
        last = (result.stdout + result.stderr).strip().splitlines()[-1:] or ["no answer"]
        return Check("turn", False, f"TURN server {host}:{port} did not answer: {last[0]}")
    return Check("turn", True, f"TURN server {host}:{port} answers (STUN over UDP)")


def check_mail_queue(max_waiting: int = MAIL_QUEUE_WARNING) -> Check:
    """The local MTA's queue: red when postfix does not answer or more than `max_waiting` mails
    wait for the relay (then the relay is down, stalled or refusing: the reason is postfix's)."""
    try:
        mails = mail_queue.queued_mails()
    except mail_queue.MailQueueUnavailable as error:
        return Check("mail-queue", False, f"local mail queue unreadable: {error}")
    oldest = round(mail_queue.oldest_age_seconds(mails))
    last_reason = next((m.delay_reason for m in reversed(mails) if m.delay_reason), None)
    details = {"length": len(mails), "oldest_seconds": oldest, "last_reason": last_reason}
    if not mails:
        return Check("mail-queue", True, "local mail queue empty: every mail reached the relay")
    summary = f"{len(mails)} mail(s) waiting for the relay, the oldest for {oldest // 60} min"
    if last_reason:
        summary += f" (last try: {last_reason})"
    return Check("mail-queue", len(mails) <= max_waiting, summary, details)


def check_disk(path: Path) -> Check:
    try:
        usage = psutil.disk_usage(str(path))
    except OSError as error:
        return Check("disk", False, f"cannot read disk usage of {path}: {error}")
    details = {"percent": usage.percent, "free_bytes": usage.free, "total_bytes": usage.total}
    summary = f"{usage.percent:.0f} % used, {_gib(usage.free)} free on {path}"
    if usage.percent >= DISK_WARNING_PERCENT:
        return Check("disk", False, f"almost full: {summary}", details)
    return Check("disk", True, summary, details)


def check_memory() -> Check:
    memory = psutil.virtual_memory()
    details = {"percent": memory.percent, "available_bytes": memory.available}
    summary = f"{memory.percent:.0f} % used, {_gib(memory.available)} available"
    return Check("memory", memory.percent < MEMORY_WARNING_PERCENT, summary, details)


def check_cpu() -> Check:
    load1, load5, _ = psutil.getloadavg()
    cores = psutil.cpu_count() or 1
    percent = psutil.cpu_percent(interval=0.2)
    details = {"percent": percent, "load1": load1, "load5": load5, "cores": cores}
    summary = f"{percent:.0f} % busy, load {load1:.2f} / {load5:.2f} on {cores} cores"
    # Sustained load far above the core count means requests queue up.
    return Check("cpu", load5 < 4 * cores, summary, details)


def _reason(error: Exception) -> str:
    text = str(error)
    if "Connection refused" in text:
        return "connection refused (is the service running?)"
    if "timed out" in text.lower():
        return "timed out"
    return text


def _gib(count: int) -> str:
    return f"{count / (1 << 30):.1f} GiB"
