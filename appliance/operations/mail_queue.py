# SPDX-License-Identifier: AGPL-3.0-or-later
"""The local MTA's queue (production's postfix null client, mail.local_mta): what waits for the
relay, read with Postfix's own `postqueue -j` (one JSON object per queued message).

Root reads it (the self-check, `appliance probe check_mail_queue`); another user needs the
`postdrop` group, as `postqueue` is set-group-ID postdrop and systemd's NoNewPrivileges drops
that bit.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass

POSTQUEUE = "/usr/sbin/postqueue"
TIMEOUT_SECONDS = 10.0


class MailQueueUnavailable(Exception):
    """postqueue is missing, or postfix does not answer; str() says why."""


@dataclass(frozen=True)
class QueuedMail:
    queue_id: str
    queue_name: str  # incoming, active, deferred, hold...
    arrival_time: int  # seconds since the epoch
    recipients: tuple[str, ...]
    delay_reason: str | None  # why the last try failed (postfix's words), if it did


def queued_mails() -> list[QueuedMail]:
    """Every mail in the queue, oldest first."""
    try:
        result = subprocess.run(
            [POSTQUEUE, "-j"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
            check=False,
        )
    except FileNotFoundError:
        raise MailQueueUnavailable(f"{POSTQUEUE} is missing: is postfix installed?") from None
    except subprocess.TimeoutExpired:
        raise MailQueueUnavailable(f"postqueue gave no answer in {TIMEOUT_SECONDS:g} s") from None
    if result.returncode != 0:
        reason = result.stderr.strip() or f"exit status {result.returncode}"
        raise MailQueueUnavailable(f"postqueue failed: {reason}")
    mails = []
    for line in result.stdout.splitlines():
        record = json.loads(line)
        recipients = record.get("recipients", [])
        reasons = [r["delay_reason"] for r in recipients if r.get("delay_reason")]
        mails.append(
            QueuedMail(
                queue_id=record["queue_id"],
                queue_name=record["queue_name"],
                arrival_time=int(record["arrival_time"]),
                recipients=tuple(r["address"] for r in recipients),
                delay_reason=reasons[0] if reasons else None,
            )
        )
    return sorted(mails, key=lambda mail: mail.arrival_time)


def mail_queue_length() -> int:
    """How many mails wait in the local MTA's queue (raises MailQueueUnavailable)."""
    return len(queued_mails())


def oldest_age_seconds(mails: list[QueuedMail], now: float | None = None) -> float:
    if not mails:
        return 0.0
    return (time.time() if now is None else now) - mails[0].arrival_time
