"""Which signatures clamd is using: one opaque version string, plus when they were published.

A verdict is only as good as the signatures that produced it, so every cached verdict is keyed
by this version. clamd's VERSION reply names the daily database (freshclam's CVDs); with custom
signature files only (the evaluation's EICAR .ndb) it names none, so the version also covers a
content hash of every signature file: adding, changing or removing one changes the version.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from appliance.clamd import ClamdClient, ClamdUnavailable

# ClamAV's database formats (clamd loads these from DatabaseDirectory; see `man sigtool`).
SIGNATURE_SUFFIXES = frozenset(
    ".cvd .cld .cud .ndb .ndu .hdb .hdu .hsb .hsu .mdb .mdu .msb .msu .ldb .ldu .idb .cdb "
    ".cbc .crb .cat .pdb .gdb .wdb .ftm .fp .sfp .ign .ign2 .info .yar .yara .pwdb".split()
)
# clamd prints the daily database's build time with ctime(), in the host's local time.
CLAMD_DATE_FORMAT = "%a %b %d %H:%M:%S %Y"
HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class SignatureState:
    version: str  # changes whenever what clamd detects may change
    engine: str  # "ClamAV 1.4.6"
    database_version: str | None  # freshclam's daily version; None with custom files only
    published: datetime | None  # build time of the daily database, else newest file's mtime

    @property
    def age_seconds(self) -> float | None:
        if self.published is None:
            return None
        return max(0.0, time.time() - self.published.timestamp())


class SignatureFiles:
    """Content hash of the signature files in one directory.

    A file is re-hashed only when its size or mtime changed, so asking often is cheap even
    with freshclam's 200 MB databases. Safe to call from several threads.
    """

    def __init__(self, directory: Path | None):
        self.directory = directory
        self._hashes: dict[Path, tuple[int, int, str]] = {}
        self._lock = threading.Lock()

    def fingerprint(self) -> tuple[str, float | None]:
        """(hash over every signature file's name and content, newest mtime or None)."""
        if self.directory is None:
            return "", None
        combined = hashlib.sha256()
        newest = None
        for path in sorted(self._signature_files()):
            stat = path.stat()
            combined.update(f"{path.name}\0{self._content_hash(path, stat)}\0".encode())
            newest = max(newest or 0.0, stat.st_mtime)
        return combined.hexdigest(), newest

    def _signature_files(self) -> list[Path]:
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
    """Ask clamd for its version and hash the signature files; raises ClamdUnavailable."""
    reply = client.version()
    try:
        files_hash, newest_mtime = files.fingerprint()
    except OSError as error:
        raise ClamdUnavailable(f"cannot read the signature files: {error}") from None
    version = hashlib.sha256(
        f"{reply.engine}\0{reply.database_version}\0{reply.database_date}\0{files_hash}".encode()
    ).hexdigest()[:20]
    published = _parse_clamd_date(reply.database_date)
    if published is None and newest_mtime is not None:
        published = datetime.fromtimestamp(newest_mtime, tz=timezone.utc)
    return SignatureState(version, reply.engine, reply.database_version, published)


def _parse_clamd_date(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        local = time.strptime(text.strip(), CLAMD_DATE_FORMAT)
    except ValueError:
        return None
    return datetime.fromtimestamp(time.mktime(local), tz=timezone.utc)


def describe_age(seconds: float | None) -> str:
    if seconds is None:
        return "age unknown"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min old"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h old"
    return f"{seconds / 86400:.0f} days old"
