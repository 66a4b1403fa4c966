# SPDX-License-Identifier: AGPL-3.0-or-later
"""A job run every so many seconds in a daemon thread of each console worker (health samples,
alerts, resuming announcements): one bad round is logged and the loop goes on; `stop()` ends it
after the current round."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)


class Periodic:
    def __init__(self, name: str, every: float, job: Callable[[], object]):
        self.name, self.every, self.job = name, every, job
        self._stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> Periodic:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self.thread.join(timeout=60)

    def _loop(self) -> None:
        while not self._stopped.is_set():
            try:
                self.job()
            except Exception:  # the loop must outlive any one bad round
                logger.exception("%s: round failed", self.name)
            self._stopped.wait(self.every)
