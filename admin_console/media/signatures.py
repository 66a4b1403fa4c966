"""The antivirus signatures clamd uses now: version and age, read from clamd itself."""

from __future__ import annotations

from pathlib import Path

from flask import current_app

from appliance.clamd import ClamdClient, ClamdUnavailable
from appliance.clamd_signatures import SignatureFiles, SignatureState, current_state

PROBE_TIMEOUT = 3.0
MAX_AGE_SECONDS = 48 * 3600


def signature_state() -> SignatureState | str:
    """The state, or the reason it cannot be known (clamd down)."""
    config = current_app.config
    database_dir = config.get("CLAMAV_DATABASE_DIR")
    files = SignatureFiles(Path(database_dir) if database_dir else None)
    try:
        return current_state(
            ClamdClient(config["CLAMD_HOST"], config["CLAMD_PORT"], timeout=PROBE_TIMEOUT), files
        )
    except ClamdUnavailable as error:
        return str(error)


def too_old(state: SignatureState) -> bool:
    return state.age_seconds is not None and state.age_seconds > MAX_AGE_SECONDS
