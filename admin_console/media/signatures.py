# SPDX-License-Identifier: AGPL-3.0-or-later
"""The antivirus signatures clamd uses now: version and age, read from clamd itself."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from flask import current_app

from appliance.antivirus.clamd import ClamdClient, ClamdUnavailable
from appliance.antivirus.signatures import SignatureFiles, SignatureState, current_state

PROBE_TIMEOUT = 3.0
MAX_AGE_SECONDS = 48 * 3600


@lru_cache(maxsize=4)
def signature_files(directory: str | None) -> SignatureFiles:
    """One SignatureFiles per directory for the process's lifetime: it re-hashes a file only when
    its size or mtime changed, which a new instance per request would do every time (freshclam's
    databases are about 250 MB)."""
    return SignatureFiles(Path(directory) if directory else None)


def signature_state() -> SignatureState | str:
    """The state, or the reason it cannot be known (clamd down)."""
    config = current_app.config
    files = signature_files(config.get("CLAMAV_DATABASE_DIR"))
    try:
        return current_state(
            ClamdClient(config["CLAMD_HOST"], config["CLAMD_PORT"], timeout=PROBE_TIMEOUT), files
        )
    except ClamdUnavailable as error:
        return str(error)


def too_old(age_seconds: float | None) -> bool:
    return age_seconds is not None and age_seconds > MAX_AGE_SECONDS
