# SPDX-License-Identifier: AGPL-3.0-or-later
"""What alerts: the health page's checks, turned into named conditions that are red or green.

Every check of `admin_console.health.run_checks` is a condition under its own name (a service
down, the disk past 90 %), except CPU and memory, whose red is often a passing spike: they stay
on the health page and in the charts. Two conditions come from the warnings: `signatures`
(freshclam's signatures older than 48 h) and, in production, `certificate` (the public TLS
certificate expiring within 14 days).

The hook for other checks, such as the mail queue of the local MTA: a check added to
`run_checks` (for instance one named `mail-queue`, red when the queue grows) alerts with no
change here, and `PROBES` takes any other function of the console's config that returns a
`Condition`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from admin_console.health_warnings import TLS_WARNING_DAYS, tls_days_left
from admin_console.media.signatures import MAX_AGE_SECONDS, too_old
from appliance.antivirus.signatures import describe_age
from appliance.operations import health

# Shown on the health page, never mailed: red for a minute under load is not an incident.
NOT_ALERTED = frozenset({"cpu", "memory"})


@dataclass(frozen=True)
class Condition:
    name: str
    red: bool
    summary: str


# More conditions, each a function of the console's config (see the module's docstring).
PROBES: list[Callable[[Mapping[str, Any]], Condition]] = []


def from_checks(checks: list[health.Check], config: Mapping[str, Any]) -> list[Condition]:
    found = [
        Condition(check.name, not check.ok, check.summary)
        for check in checks
        if check.name not in NOT_ALERTED
    ]
    clamd = next((check for check in checks if check.name == "clamd"), None)
    if config.get("CLAMAV_SIGNATURES") == "freshclam" and clamd is not None and clamd.ok:
        age = clamd.details.get("age_seconds")
        summary = f"antivirus signatures are {describe_age(age)}"
        if too_old(age):
            summary += f" (more than {MAX_AGE_SECONDS // 3600} h): check freshclam"
        found.append(Condition("signatures", too_old(age), summary))
    if config.get("MODE") == "production":
        found.append(certificate(str(config.get("PUBLIC_BASEURL", "")), config.get("TLS_CA_FILE")))
    found += [probe(config) for probe in PROBES]
    return found


def certificate(public_baseurl: str, cafile: str | None) -> Condition:
    url = urlsplit(public_baseurl)
    host, port = url.hostname or "", url.port or 443
    try:
        days = tls_days_left(host, port, cafile)
    except OSError as error:  # ssl.SSLError is an OSError
        return Condition(
            "certificate", True, f"the TLS certificate of {host} cannot be checked: {error}"
        )
    summary = f"the TLS certificate of {host} expires in {max(0, int(days))} day(s)"
    return Condition("certificate", days < TLS_WARNING_DAYS, summary)
