# SPDX-License-Identifier: AGPL-3.0-or-later
"""Recent proofs that a client may read a media: Synapse served it, or answered its HEAD, with
that client's token a moment ago.

A known attachment's verdict (scan_encrypted) needs no file, only Synapse's word that this
client may read this media; asking Synapse for it on every request costs a round trip that
dwarfs the rest of the answer. So a grant is remembered for TTL_SECONDS, keyed on the SHA-256
of the client's Authorization header (the token itself is never kept) and the media. Only
grants are kept, never refusals or errors: a refused client is asked about again each time.

What this trades, on purpose: for at most TTL_SECONDS after a token is revoked, or a media
deleted or quarantined, the holder of a remembered grant can still learn a verdict (clean or
not) about media it could read a moment ago. Never bytes: every download, plain or encrypted,
fetches the file from Synapse with the client's token.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable

from appliance.addresses.media_ref import MediaRef

TTL_SECONDS = 30.0
# Each entry is about 200 bytes: 10,000 grants stay well under 5 MB.
MAX_ENTRIES = 10_000

_Key = tuple[str, str]


class AccessCache:
    def __init__(
        self,
        ttl_seconds: float = TTL_SECONDS,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._granted: OrderedDict[_Key, float] = OrderedDict()  # key -> when it expires

    def allows(self, authorization: str | None, media: MediaRef) -> bool:
        """True if Synapse granted this client this media less than TTL_SECONDS ago."""
        key = _key(authorization, media)
        expires = self._granted.get(key)
        if expires is None:
            return False
        if self._clock() >= expires:
            del self._granted[key]
            return False
        return True

    def grant(self, authorization: str | None, media: MediaRef) -> None:
        """Remember that Synapse has just served this media to this client."""
        key = _key(authorization, media)
        self._granted[key] = self._clock() + self._ttl
        self._granted.move_to_end(key)
        while len(self._granted) > self._max:
            self._granted.popitem(last=False)  # the oldest grant: the first to expire


def _key(authorization: str | None, media: MediaRef) -> _Key:
    token_hash = hashlib.sha256((authorization or "").encode()).hexdigest()
    return token_hash, str(media)
