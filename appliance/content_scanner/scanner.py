# SPDX-License-Identifier: AGPL-3.0-or-later
"""Verdicts: from the cache when the same bytes were scanned with the same signatures, else
from clamd (within the configured time), one scan per file however many requests ask for it at
once. Anything short of a verdict raises `not_scanned` (fail closed).

Content comes as :data:`Chunks`, a function giving a fresh pass over the bytes at each call:
a file is hashed, then streamed to clamd, without being copied whole (an attachment's plaintext
is decrypted anew, a chunk at a time, for each pass). Hashing, decrypting and scanning run in
threads, off the event loop. A verdict is stored only while the signature state is cacheable
(see clamd_signatures.SignatureWatch), so one made with replaced signatures is never reused.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

from appliance.antivirus.clamd import ClamdClient, ClamdUnavailable
from appliance.antivirus.signatures import SignatureFiles, SignatureState, SignatureWatch
from appliance.antivirus.verdict import Verdict
from appliance.content_scanner.attachment import EncryptedFile
from appliance.content_scanner.errors import not_scanned
from appliance.content_scanner.verdict_store import VerdictStore

logger = logging.getLogger(__name__)

Chunks = Callable[[], Iterable[bytes | memoryview]]


def whole(content: bytes | bytearray) -> Chunks:
    """Content already in memory, as one chunk (a view: no copy)."""
    return lambda: (memoryview(content),)


def _sha256(chunks: Chunks) -> str:
    digest = hashlib.sha256()
    for chunk in chunks():
        digest.update(chunk)
    return digest.hexdigest()


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
        self._watch = SignatureWatch(clamd, files)
        self._store = store
        self._timeout = timeout
        self._inflight: dict[tuple[str, str], asyncio.Task[Verdict]] = {}
        self._version: str | None = None
        self.stats = ScanStats()

    async def signature_state(self) -> SignatureState:
        """What clamd detects now; no answer from clamd means no verdict at all."""
        try:
            state = await asyncio.to_thread(self._watch.state)
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
        self, file: EncryptedFile, ciphertext: bytearray, state: SignatureState
    ) -> Verdict:
        """The verdict on an attachment's fetched ciphertext: checked against the sender's
        hash, then known by its identity, or decrypted and scanned."""
        await asyncio.to_thread(file.verify, ciphertext)
        known = self.known_attachment(file, state)
        if known is not None:
            return known
        plaintext = partial(file.plaintext_chunks, ciphertext)
        sha256, verdict = await self.content_verdict(plaintext, state)
        self._store.remember_attachment(file.identity, sha256)
        return verdict

    async def content_verdict(self, chunks: Chunks, state: SignatureState) -> tuple[str, Verdict]:
        """(SHA-256 of the content, its verdict)."""
        sha256 = await asyncio.to_thread(_sha256, chunks)
        cached = self._store.get(sha256, state.version)
        if cached is not None:
            self.stats.cache_hits += 1
            return sha256, cached
        key = (sha256, state.version)
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._scan(sha256, state, chunks))
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

    async def _scan(self, sha256: str, state: SignatureState, chunks: Chunks) -> Verdict:
        self.stats.scans += 1
        try:
            verdict = await asyncio.wait_for(
                asyncio.to_thread(lambda: self._clamd.scan_chunks(chunks())), self._timeout
            )
        except ClamdUnavailable as error:
            logger.error("could not scan %s: %s", sha256, error)
            raise not_scanned("the antivirus is unavailable") from None
        except TimeoutError:
            logger.error("could not scan %s: clamd took more than %s s", sha256, self._timeout)
            raise not_scanned("the antivirus is too slow") from None
        if state.cacheable:
            self._store.put(sha256, state.version, verdict)
        if not verdict.clean:
            logger.warning("file %s is not clean: %s", sha256, verdict.signature)
        return verdict
