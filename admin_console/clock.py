# SPDX-License-Identifier: AGPL-3.0-or-later
"""The console's clock: time.time, unless the config's CLOCK replaces it (tests move time)."""

from __future__ import annotations

import time

from flask import current_app


def now() -> float:
    return current_app.config.get("CLOCK", time.time)()
