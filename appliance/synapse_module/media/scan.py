# SPDX-License-Identifier: AGPL-3.0-or-later
"""Upload-time antivirus: every file Synapse stores is streamed to clamd before anyone gets it.

Synapse calls `check_media_file_for_spam` for local uploads, remote media, thumbnails and URL
previews, after writing the file to disk and before recording it, so a refused file is deleted
and never served. Verdicts are cached by content hash and signature version, and only while
clamd has certainly loaded the signatures that version names (clamd_signatures.SignatureWatch);
anything that stops a verdict from being reached (clamd down, slow or confused, the scan tables
not created yet) refuses the file.

Refusals say what happened, to the client and in the log: `403 M_FORBIDDEN` for a file the
antivirus found something in, or could not look inside (a password-protected archive, unless
`clamav.allow_encrypted_archives`), `503 M_UNKNOWN` "try again" when the antivirus could not
give a verdict. The callback raises these errors rather than returning a code: Synapse 1.163
answers every refused upload "400 Bad content" whatever code the callback returns (and remote
media "404"), while a SynapseError raised here reaches the client as it is on uploads and remote
media fetches (media_storage.store_into_file deletes the file and re-raises it before anything
is recorded; the upload servlet and the remote download let SynapseError through). Thumbnails
Synapse makes at upload only log the error. tests/test_encrypted_files.py checks the answers.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from synapse.module_api import NOT_SPAM, ModuleApi
from synapse.module_api.errors import Codes, SynapseError

from appliance.antivirus.clamd import CHUNK_SIZE, ClamdClient, ClamdUnavailable
from appliance.antivirus.encrypted import is_encrypted
from appliance.antivirus.signatures import SignatureFiles, SignatureState, SignatureWatch
from appliance.antivirus.verdict import Verdict
from appliance.operations import metrics
from appliance.synapse_module.config import ClamdConfig
from appliance.synapse_module.media.scan_store import QuarantineRecord, ScanStore, TablesNotReady
from appliance.synapse_module.synapse_internals import requesting_user_id

if TYPE_CHECKING:  # Synapse's own types of the callback's arguments
    from synapse.media._base import FileInfo
    from synapse.media.media_storage import ReadableFileWrapper

logger = logging.getLogger(__name__)

# What a client is told (see the module's docstring for why these are raised).
INFECTED_MESSAGE = "The antivirus found {signature} in this file: it was refused"
ENCRYPTED_MESSAGE = (
    "This file is encrypted (password-protected): the antivirus cannot look inside it, "
    "so it was refused"
)
NOT_SCANNED_MESSAGE = "The antivirus could not scan this file right now: try again in a moment"


QUARANTINE_COUNT_MS = 60_000


def _result(verdict: Verdict) -> str:
    if verdict.clean:
        return "clean"
    return "encrypted" if is_encrypted(verdict) else "infected"


def refusal(verdict: Verdict) -> SynapseError:
    """The error for a file clamd did not find clean."""
    if is_encrypted(verdict):
        return SynapseError(403, ENCRYPTED_MESSAGE, Codes.FORBIDDEN)
    signature = verdict.signature or "a threat"
    return SynapseError(403, INFECTED_MESSAGE.format(signature=signature), Codes.FORBIDDEN)


def not_scanned() -> SynapseError:
    return SynapseError(503, NOT_SCANNED_MESSAGE, Codes.UNKNOWN)


def media_kind(file_info: FileInfo) -> str:
    """What Synapse is storing: a local upload, remote media, a thumbnail or a URL preview."""
    if file_info.thumbnail is not None:
        return "thumbnail"
    if file_info.url_cache:
        return "url_preview"
    if file_info.server_name is not None:
        return "remote"
    return "upload"


def media_uri(file_info: FileInfo, local_server: str) -> str:
    """The mxc:// URI of the media (for a thumbnail: of the media it was made from)."""
    return f"mxc://{file_info.server_name or local_server}/{file_info.file_id}"


def requesting_user() -> str | None:
    """The user whose request is storing the file (the uploader, for an upload).

    FileInfo carries no uploader and the module API offers no way to get one, so this reads
    the request that Synapse's logging context is attached to (through synapse_internals).
    None when there is no authenticated request (e.g. media fetched in the background).
    """
    return requesting_user_id()


def file_chunks(path: str, deadline: float) -> Iterator[bytes]:
    """The file in clamd-sized chunks, giving up once the scan has taken too long."""
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK_SIZE):
            if time.monotonic() > deadline:
                raise ClamdUnavailable("clamd is too slow: the scan ran out of time")
            yield chunk


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


class MediaScanner:
    def __init__(self, api: ModuleApi, config: ClamdConfig, store: ScanStore):
        self._api = api
        self._store = store
        self._timeout = config.timeout_seconds
        # The socket timeout bounds each wait on clamd; file_chunks bounds the whole stream.
        self._clamd = ClamdClient(config.host, config.port, timeout=config.timeout_seconds)
        self._signatures = SignatureWatch(
            self._clamd, SignatureFiles(Path(config.database_dir) if config.database_dir else None)
        )
        self._last_version: str | None = None

    def register(self) -> None:
        """Scan every stored file (the store's tables are created with the module's tables)."""
        self._api.register_spam_checker_callbacks(
            check_media_file_for_spam=self.check_media_file_for_spam
        )
        # The quarantine's size for the metrics, on the process running background tasks.
        self._api.looping_background_call(
            self._count_quarantine, QUARANTINE_COUNT_MS, desc="appliance_quarantine_count"
        )

    async def _count_quarantine(self) -> None:
        try:
            _, total = await self._store.list_quarantine(0, 1)
        except TablesNotReady:
            return
        metrics.QUARANTINE.set(total)

    async def check_media_file_for_spam(
        self, file_wrapper: ReadableFileWrapper, file_info: FileInfo
    ) -> Literal["NOT_SPAM"]:
        """Synapse's ``check_media_file_for_spam`` (spam checker callback), after the file is
        written and before it is recorded.

        Args:
            file_wrapper: the stored file (its ``path`` is read).
            file_info: what is stored: an upload, remote media, a thumbnail or a URL preview.

        Returns:
            ``NOT_SPAM`` for a clean file.

        Raises:
            SynapseError: 403 ``M_FORBIDDEN`` for a file found infected or encrypted (it is
                quarantined), 503 when no verdict could be reached (fail closed).  Synapse then
                deletes a refused file.
        """
        kind, media = media_kind(file_info), media_uri(file_info, self._api.server_name)
        user = requesting_user()
        try:
            verdict = await self._check(file_wrapper.path, kind, media, user)
        except (ClamdUnavailable, TablesNotReady) as error:
            logger.error(
                "refused %s %s: antivirus unavailable, not scanned: %s", kind, media, error
            )
            metrics.REFUSALS.labels(metrics.UPLOAD_NOT_SCANNED).inc()
            raise not_scanned() from None
        except Exception:
            # Fail closed, and say "try again" rather than a bare 500.
            logger.exception("refused %s %s: antivirus unavailable, scanning failed", kind, media)
            metrics.REFUSALS.labels(metrics.UPLOAD_NOT_SCANNED).inc()
            raise not_scanned() from None
        if not verdict.clean:
            encrypted = is_encrypted(verdict)
            metrics.REFUSALS.labels(
                metrics.UPLOAD_ENCRYPTED if encrypted else metrics.UPLOAD_INFECTED
            ).inc()
            raise refusal(verdict)
        return NOT_SPAM

    async def _check(self, path: str, kind: str, media: str, user: str | None) -> Verdict:
        sha256, state = await self._api.defer_to_thread(self._hash_and_state, path)
        await self._on_signature_version(state.version)
        verdict = await self._store.get_verdict(sha256, state.version)
        source = "cache" if verdict is not None else "clamd"
        if verdict is None:
            verdict = await self._scan(path)
            if state.cacheable:
                now = self._api.get_current_time_msec()
                await self._store.record_verdict(sha256, state.version, verdict, now)
        else:
            logger.info("%s %s: verdict for %s from the cache", kind, media, sha256)
        metrics.SCANS.labels(_result(verdict), source).inc()
        if not verdict.clean:
            await self._quarantine(sha256, kind, media, user, verdict, state)
        return verdict

    def _hash_and_state(self, path: str) -> tuple[str, SignatureState]:
        return file_sha256(path), self._signatures.state()

    async def _on_signature_version(self, version: str) -> None:
        if version != self._last_version:
            if self._last_version is not None:
                logger.info("signatures changed: earlier verdicts will not be reused")
            await self._store.forget_verdicts_except(version)
            self._last_version = version

    async def _scan(self, path: str) -> Verdict:
        deadline = time.monotonic() + self._timeout
        return await self._api.defer_to_thread(
            lambda: self._clamd.scan_chunks(file_chunks(path, deadline))
        )

    async def _quarantine(
        self,
        sha256: str,
        kind: str,
        media: str,
        user: str | None,
        verdict: Verdict,
        state: SignatureState,
    ) -> None:
        record = QuarantineRecord(
            record_id=secrets.token_hex(12),
            sha256=sha256,
            media=media,
            kind=kind,
            user_id=user,
            signature=verdict.signature or "unknown",
            signature_version=state.version,
            detected_ts=self._api.get_current_time_msec(),
        )
        await self._store.add_quarantine_record(record)
        metrics.QUARANTINE.inc()  # counted again from the table every minute
        logger.warning(
            "refused %s %s %s (sha256 %s, from %s): %s",
            "encrypted" if is_encrypted(verdict) else "infected",
            kind,
            media,
            sha256,
            record.user_id or "unknown user",
            record.signature,
        )
