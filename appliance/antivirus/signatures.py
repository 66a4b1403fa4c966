# SPDX-License-Identifier: AGPL-3.0-or-later
"""Which signatures clamd is using: one opaque version string, plus when they were published.

A verdict is only as good as the signatures that produced it, so every cached verdict is keyed
by this version. clamd's VERSION reply names the daily database (freshclam's CVDs); with custom
signature files only (the evaluation's EICAR .ndb) it names none, so the version also covers a
content hash of every signature file: adding, changing or removing one changes the version.

The version also covers whether clamd refuses encrypted archives (asked of clamd with a tiny
probe, see appliance.antivirus.encrypted): that follows clamd.conf, not the signature files, and
a "clean" verdict on a password-protected zip made while they were allowed must not outlive the
switch back to refusing them.

The version changes as soon as the files do, but clamd goes on scanning with the signatures it
loaded until it reloads. :class:`SignatureWatch` (used by the Synapse module and the content
scanner) asks clamd to reload and says when verdicts may be cached again.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from appliance.antivirus.clamd import ClamdClient, ClamdUnavailable
from appliance.antivirus.encrypted import encrypted_archives_refused

# ClamAV's database formats (clamd loads these from DatabaseDirectory; see `man sigtool`).
SIGNATURE_SUFFIXES = frozenset(
    ".cvd .cld .cud .ndb .ndu .hdb .hdu .hsb .hsu .mdb .mdu .msb .msu .ldb .ldu .idb .cdb "
    ".cbc .crb .cat .pdb .gdb .wdb .ftm .fp .sfp .ign .ign2 .info .yar .yara .pwdb".split()
)
# clamd prints the daily database's build time with ctime(), in the host's local time.
CLAMD_DATE_FORMAT = "%a %b %d %H:%M:%S %Y"
HASH_CHUNK = 1 << 20
# clamd.conf's SelfCheck (templates/clamav/clamd.conf.j2): clamd looks for changed signature
# files this often, and reloads them when it finds some, whoever else asked or not.
CLAMD_SELF_CHECK_SECONDS = 600
# How long clamd may take to load signatures: a floor, plus time per MB of signature files.
# Generous for a small, busy box: freshclam's ~300 MB load in well under a minute on 2 cores.
RELOAD_FLOOR_SECONDS = 5.0
RELOAD_SECONDS_PER_MB = 0.5


@dataclass(frozen=True)
class SignatureState:
    version: str  # changes whenever what clamd detects may change
    engine: str  # "ClamAV 1.4.6"
    database_version: str | None  # freshclam's daily version; None with custom files only
    published: datetime | None  # build time of the daily database, else newest file's mtime
    encrypted_archives_refused: bool  # what clamd said of a password-protected zip
    # True once clamd has certainly loaded the files `version` covers (see SignatureWatch):
    # only then may a verdict be stored under `version`.
    cacheable: bool = False

    @property
    def age_seconds(self) -> float | None:
        if self.published is None:
            return None
        return max(0.0, time.time() - self.published.timestamp())


@dataclass(frozen=True)
class Fingerprint:
    files_hash: str  # over every signature file's name and content
    newest_mtime: float | None
    changed_at: float  # last change to the set (a file's ctime, or the directory's mtime)
    total_bytes: int

    @property
    def reload_bound_seconds(self) -> float:
        """How long clamd may take to load these files."""
        return RELOAD_FLOOR_SECONDS + RELOAD_SECONDS_PER_MB * self.total_bytes / 1e6


NO_FILES = Fingerprint("", None, 0.0, 0)


class SignatureFiles:
    """Content hash of the signature files in one directory.

    A file is re-hashed only when its size or mtime changed, so asking often is cheap even
    with freshclam's 200 MB databases. Safe to call from several threads.
    """

    def __init__(self, directory: Path | None):
        self.directory = directory
        self._hashes: dict[Path, tuple[int, int, str]] = {}
        self._lock = threading.Lock()

    def fingerprint(self) -> Fingerprint:
        if self.directory is None:
            return NO_FILES
        combined = hashlib.sha256()
        newest, total = None, 0
        # ctime, not mtime: copying or renaming a file in changes its ctime even when it keeps
        # an old mtime; the directory's mtime covers a file taken out.
        changed_at = self.directory.stat().st_mtime
        for path in sorted(self._signature_files()):
            stat = path.stat()
            combined.update(f"{path.name}\0{self._content_hash(path, stat)}\0".encode())
            newest = max(newest or 0.0, stat.st_mtime)
            changed_at = max(changed_at, stat.st_ctime)
            total += stat.st_size
        return Fingerprint(combined.hexdigest(), newest, changed_at, total)

    def _signature_files(self) -> list[Path]:
        if self.directory is None:
            return []
        return [
            path
            for path in self.directory.iterdir()
            if path.suffix in SIGNATURE_SUFFIXES and path.is_file()
        ]

    def _content_hash(self, path: Path, stat) -> str:
        key = (stat.st_size, stat.st_mtime_ns)
        with self._lock:
            known = self._hashes.get(path)
        if known and known[:2] == key:
            return known[2]
        digest = hashlib.sha256()
        with open(path, "rb") as file:
            while chunk := file.read(HASH_CHUNK):
                digest.update(chunk)
        with self._lock:
            self._hashes[path] = (*key, digest.hexdigest())
        return digest.hexdigest()


def current_state(client: ClamdClient, files: SignatureFiles) -> SignatureState:
    """Ask clamd for its version and hash the signature files; raises ClamdUnavailable.

    The state says nothing about caching (cacheable is False): that is SignatureWatch's call.
    """
    return _state(client, _fingerprint(files))


def _fingerprint(files: SignatureFiles) -> Fingerprint:
    try:
        return files.fingerprint()
    except OSError as error:
        raise ClamdUnavailable(f"cannot read the signature files: {error}") from None


def _state(client: ClamdClient, fingerprint: Fingerprint) -> SignatureState:
    reply = client.version()
    encrypted_refused = encrypted_archives_refused(client)
    version = hashlib.sha256(
        f"{reply.engine}\0{reply.database_version}\0{reply.database_date}\0"
        f"{fingerprint.files_hash}\0{encrypted_refused}".encode()
    ).hexdigest()[:20]
    published = _parse_clamd_date(reply.database_date)
    if published is None and fingerprint.newest_mtime is not None:
        published = datetime.fromtimestamp(fingerprint.newest_mtime, tz=UTC)
    return SignatureState(
        version, reply.engine, reply.database_version, published, encrypted_refused
    )


class SignatureWatch:
    """The signature state for a process that caches verdicts, and clamd kept in step.

    When the signature files change, clamd still scans with the old ones until it reloads, and
    its protocol never says when a reload is done: RELOAD is answered at once, the new engine
    replaces the old one silently, and a RELOAD that comes while a reload is running is merged
    into it, though that one may have read the files before they changed. So, per change:

    1. RELOAD as soon as the change is seen;
    2. RELOAD again once any reload running at step 1 must be over (`reload_bound_seconds`):
       this one, or one it merges into, started after the change;
    3. cache verdicts again once that reload must be over too.

    Until then the state is not `cacheable`: every file is scanned by clamd and the verdict
    answered but not stored, so a verdict from the old signatures never outlives the change.
    Files that changed longer ago than clamd's SelfCheck period plus a reload are known to
    clamd already (it reloads changed files on its own at every SelfCheck): a process that
    starts then caches at once. Thread-safe: the module and the scanner call it from threads.
    """

    def __init__(
        self,
        client: ClamdClient,
        files: SignatureFiles,
        *,
        clock: Callable[[], float] = time.time,  # compared with the files' ctime
    ):
        self._client = client
        self._files = files
        self._clock = clock
        self._lock = threading.Lock()
        self._files_hash: str | None = None
        self._reloads: list[float] = []  # when each RELOAD for these files was sent
        self._settled = False

    def state(self) -> SignatureState:
        """Raises ClamdUnavailable when clamd does not answer (VERSION or RELOAD)."""
        fingerprint = _fingerprint(self._files)
        state = _state(self._client, fingerprint)
        with self._lock:
            if fingerprint.files_hash != self._files_hash:
                self._files_hash, self._reloads = fingerprint.files_hash, []
                self._settled = (
                    self._clock() - fingerprint.changed_at
                    >= CLAMD_SELF_CHECK_SECONDS + fingerprint.reload_bound_seconds
                )
            if not self._settled:
                self._settled = self._step(fingerprint.reload_bound_seconds)
            return replace(state, cacheable=self._settled)

    def _step(self, bound: float) -> bool:
        """Send the RELOAD that is due, if any; True once the last one must be done."""
        now = self._clock()
        if len(self._reloads) < 2 and (not self._reloads or now - self._reloads[-1] >= bound):
            self._client.reload()
            self._reloads.append(now)
            return False
        return len(self._reloads) == 2 and now - self._reloads[-1] >= bound


def _parse_clamd_date(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        local = time.strptime(text.strip(), CLAMD_DATE_FORMAT)
    except ValueError:
        return None
    return datetime.fromtimestamp(time.mktime(local), tz=UTC)


def describe_age(seconds: float | None) -> str:
    if seconds is None:
        return "age unknown"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min old"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h old"
    return f"{seconds / 86400:.0f} days old"
