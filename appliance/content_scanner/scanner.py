"""Verdicts: from the cache when the same bytes were scanned with the same signatures, else
from clamd (off the event loop, within the configured time), one scan per file however many
requests ask for it at once. Anything short of a verdict raises `not_scanned` (fail closed).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from appliance.clamd import ClamdClient, ClamdUnavailable
from appliance.clamd_signatures import SignatureFiles, SignatureState, current_state
from appliance.content_scanner.attachment import EncryptedFile
from appliance.content_scanner.errors import not_scanned
from appliance.content_scanner.verdict_store import Verdict, VerdictStore

logger = logging.getLogger(__name__)


@dataclass
class ScanStats:
    """Counters since start, shown by /health (and used by the tests and benchmarks)."""

    scans: int = 0  # files sent to clamd
    cache_hits: int = 0  # verdicts answered from the store
    shared: int = 0  # requests that waited for a scan another request had started


class Scanner:
    def __init__(
        self, clamd: ClamdClient, files: SignatureFiles, store: VerdictStore, timeout: float
    ):
        self._clamd = clamd
        self._files = files
        self._store = store
        self._timeout = timeout
        self._inflight: dict[tuple[str, str], asyncio.Task[Verdict]] = {}
        self._version: str | None = None
        self.stats = ScanStats()

    async def signature_state(self) -> SignatureState:
        """What clamd detects now; no answer from clamd means no verdict at all."""
        try:
            state = await asyncio.to_thread(current_state, self._clamd, self._files)
        except ClamdUnavailable as error:
            logger.error("refusing to answer: %s", error)
            raise not_scanned("the antivirus is unavailable") from None
        if state.version != self._version:
            self._store.forget_verdicts_except(state.version)
            self._version = state.version
        return state

    def known_attachment(self, file: EncryptedFile, state: SignatureState) -> Verdict | None:
        verdict = self._store.get_attachment(file.identity, state.version)
        if verdict is not None:
            self.stats.cache_hits += 1
        return verdict

    async def attachment_verdict(
        self,
        file: EncryptedFile,
        state: SignatureState,
        fetch: Callable[[], Awaitable[bytes]],
    ) -> Verdict:
        """The verdict on an encrypted attachment, fetching it only when it is not known."""
        known = self.known_attachment(file, state)
        if known is not None:
            return known
        plaintext = file.decrypt(await fetch())
        sha256, verdict = await self.content_verdict(plaintext, state)
        self._store.remember_attachment(file.identity, sha256)
        return verdict

    async def content_verdict(self, content: bytes, state: SignatureState) -> tuple[str, Verdict]:
        """(SHA-256 of content, its verdict)."""
        sha256 = await asyncio.to_thread(lambda: hashlib.sha256(content).hexdigest())
        cached = self._store.get(sha256, state.version)
        if cached is not None:
            self.stats.cache_hits += 1
            return sha256, cached
        key = (sha256, state.version)
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._scan(sha256, state.version, content))
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))
        else:
            self.stats.shared += 1
        # Shielded: a client that hangs up must not cancel the scan others are waiting for.
        return sha256, await asyncio.shield(task)

    def _forget(self, key: tuple[str, str], task: asyncio.Task) -> None:
        self._inflight.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved, so an error nobody awaited is not logged twice

    async def _scan(self, sha256: str, version: str, content: bytes) -> Verdict:
        self.stats.scans += 1
        try:
            result = await asyncio.wait_for(
                asyncio.to_thread(self._clamd.scan_bytes, content), self._timeout
            )
        except ClamdUnavailable as error:
            logger.error("could not scan %s: %s", sha256, error)
            raise not_scanned("the antivirus is unavailable") from None
        except TimeoutError:
            logger.error("could not scan %s: clamd took more than %s s", sha256, self._timeout)
            raise not_scanned("the antivirus is too slow") from None
        verdict = Verdict(result.clean, result.signature)
        self._store.put(sha256, version, verdict)
        if not verdict.clean:
            logger.warning("file %s is not clean: %s", sha256, verdict.signature)
        return verdict
