# SPDX-License-Identifier: AGPL-3.0-or-later
"""A scan verdict: what clamd said about some bytes.

One type for clamd's answer (appliance.antivirus.clamd), the Synapse module's verdict cache and the
content scanner's, so the three cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    clean: bool
    signature: str | None = None  # the name of what was found, when not clean
