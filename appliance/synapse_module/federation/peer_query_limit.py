# SPDX-License-Identifier: AGPL-3.0-or-later
"""How many questions a user's requests may put to the network's other servers.

Each account look-up or directory search that is not answered from a cache sends a federation
query to a peer: a user who could send them without end would have this server flood its
peers.  So each user may cause at most ``most`` peer queries in any ``window_seconds`` (a
sliding window, counted in this process: a bound on what one process sends, not an exact
network-wide quota).  Past it the caller refuses with 429 ``M_LIMIT_EXCEEDED`` (account
look-ups) or asks no peer (directory searches, which still answer from this server).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Protocol


class ReactorClock(Protocol):
    """The part of Twisted's reactor that tells the time and schedules (a test's
    ``twisted.internet.task.Clock`` too)."""

    def seconds(self) -> float: ...

    def callLater(self, delay: float, callable: Any, *args: Any, **kw: Any) -> Any: ...


class PeerQueryLimit:
    def __init__(self, most: int, window_seconds: float, clock: ReactorClock) -> None:
        self._most = most
        self._window = window_seconds
        self._clock = clock
        self._asked: dict[str, deque[float]] = {}

    def take(self, user_id: str, count: int = 1) -> float | None:
        """Count ``count`` queries for the user if they fit; else the seconds until they would
        (nothing counted)."""
        now = self._clock.seconds()
        asked = self._asked.setdefault(user_id, deque())
        while asked and asked[0] <= now - self._window:
            asked.popleft()
        if len(asked) + count > self._most:
            if not asked:
                del self._asked[user_id]
                return self._window  # more than a whole window holds
            return max(asked[0] + self._window - now, 0.001)  # when the oldest leaves
        asked.extend([now] * count)
        # Users who stopped asking are forgotten when they ask again; the others are few.
        if len(self._asked) > 10_000:
            self._forget_idle(now)
        return None

    def _forget_idle(self, now: float) -> None:
        for user_id in [u for u, a in self._asked.items() if not a or a[-1] <= now - self._window]:
            del self._asked[user_id]
