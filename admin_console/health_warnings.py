# SPDX-License-Identifier: AGPL-3.0-or-later
"""Warnings on the health page: what will break soon, before it does.

Disk above 90 %, antivirus signatures older than 48 h (freshclam only: the evaluation's
EICAR signatures never change, and the page says so), and in production the TLS certificate
of the public URL expiring within 14 days; for as long as federation is open, a permanent
warning.
"""

from __future__ import annotations

import socket
import ssl
import time
from urllib.parse import urlsplit

from flask import current_app
from flask_babel import gettext as _

from admin_console.federation.views import open_federation_warning
from admin_console.media.signatures import too_old
from appliance.antivirus.signatures import describe_age
from appliance.operations import health

TLS_WARNING_DAYS = 14
TLS_TIMEOUT = 5.0


def tls_days_left(host: str, port: int, cafile: str | None = None) -> float:
    """Days until the certificate the server presents expires; raises ssl.SSLError/OSError."""
    context = ssl.create_default_context(cafile=cafile)
    with socket.create_connection((host, port), timeout=TLS_TIMEOUT) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            not_after = tls.getpeercert()["notAfter"]
    return (ssl.cert_time_to_seconds(not_after) - time.time()) / 86400


def tls_warning(public_baseurl: str, cafile: str | None = None) -> str | None:
    url = urlsplit(public_baseurl)
    if url.scheme != "https" or not url.hostname:
        return None
    try:
        days = tls_days_left(url.hostname, url.port or 443, cafile)
    except (OSError, ssl.SSLError) as error:
        return _(
            "The TLS certificate of %(host)s cannot be checked: %(error)s",
            host=url.hostname,
            error=str(error),
        )
    if days < TLS_WARNING_DAYS:
        return _(
            "The TLS certificate of %(host)s expires in %(days)d day(s): renew it.",
            host=url.hostname,
            days=max(0, int(days)),
        )
    return None


def warnings(checks: list[health.Check]) -> list[str]:
    config = current_app.config
    found = []
    disk = next((check for check in checks if check.name == "disk"), None)
    if disk and disk.details.get("percent", 0) >= health.DISK_WARNING_PERCENT:
        found.append(
            _(
                "The disk is %(percent)d %% full: free space before Synapse stops.",
                percent=disk.details["percent"],
            )
        )
    # The clamd check has just read the signatures' age: asking clamd (and hashing its
    # databases) a second time per page would only cost.
    clamd = next((check for check in checks if check.name == "clamd"), None)
    if config.get("CLAMAV_SIGNATURES") == "freshclam" and clamd:
        age = clamd.details.get("age_seconds")
        if too_old(age):
            found.append(
                _("The antivirus signatures are %(age)s: check freshclam.", age=describe_age(age))
            )
    if open_federation := open_federation_warning():
        found.append(open_federation)
    if config.get("MODE") == "production":
        message = tls_warning(config.get("PUBLIC_BASEURL", ""), config.get("TLS_CA_FILE"))
        if message:
            found.append(message)
    return found
