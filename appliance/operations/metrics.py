# SPDX-License-Identifier: AGPL-3.0-or-later
"""The appliance's own Prometheus metrics, kept by the Synapse module in Synapse's process.

They are prometheus_client metrics on its default registry, which Synapse's metrics listener
(`metrics.enabled`, see the README's "Metrics") serves beside Synapse's own, in Prometheus'
text format. Counters count from the process's start, as Prometheus expects (it computes
rates and handles restarts); each Synapse process counts what it handled.

Refusal reasons are short, stable labels (never an address or a user ID, which would make
one time series per person).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

SCANS = Counter(
    "appliance_scans",
    "Files the upload scan judged, by result (clean, infected, encrypted) and source "
    "(clamd, or a cached verdict)",
    ["result", "source"],
)
REFUSALS = Counter(
    "appliance_refusals",
    "Requests the appliance's rules refused, by reason",
    ["reason"],
)
REGISTRATIONS = Counter(
    "appliance_registrations",
    "Registrations admitted by the registration policy, by kind (agent, external, sso, server)",
    ["kind"],
)
INVITATIONS = Counter(
    "appliance_invitations",
    "Email invitations of externals stored and mailed",
)
QUARANTINE = Gauge(
    "appliance_quarantine_files",
    "Files in the antivirus quarantine (counted from its table every minute by the process "
    "that runs Synapse's background tasks, and one more at each file quarantined)",
)

# The refusal reasons, one place for their labels; an address refused at `requestToken` or when
# added to an account is `email_<verdict>` (registration.Verdict: not_allowed,
# invalid_address, unavailable).
UPLOAD_INFECTED = "upload_infected"
UPLOAD_ENCRYPTED = "upload_encrypted"
UPLOAD_NOT_SCANNED = "upload_not_scanned"
REGISTRATION_NO_EMAIL = "registration_no_verified_email"
REGISTRATION_NOT_ALLOWED = "registration_address_not_allowed"
REGISTRATION_USERNAME = "registration_username_not_derived"
INVITATION_LIMIT = "invitation_limit"
