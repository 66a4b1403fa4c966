# SPDX-License-Identifier: AGPL-3.0-or-later
"""The content scanner's configuration: one JSON file rendered from templates/content_scanner/."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

# Without max_concurrent_scans: as many files of the largest size as fit in this much memory
# (a file being fetched, checked and scanned is held about once: see media_fetch and scanner),
# and no more than clamd.conf's MaxThreads, beyond which requests would only queue in clamd.
DEFAULT_FILE_MEMORY_BYTES = 512 << 20
MAX_DEFAULT_CONCURRENT_SCANS = 8


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class ScannerConfig:
    listen_host: str
    listen_port: int
    synapse_url: str  # where media is fetched, with the client's own access token
    clamd_host: str
    clamd_port: int
    clamd_timeout_seconds: float
    signature_dir: Path | None  # clamd's DatabaseDirectory (part of the signature version)
    state_dir: Path  # the verdict database lives here
    body_key_file: Path  # the private key for encrypted request bodies (0600)
    max_file_size_bytes: int
    fetch_timeout_seconds: float = 60.0
    max_concurrent_scans: int | None = None  # None: see concurrent_scans

    @property
    def concurrent_scans(self) -> int:
        """Requests that may fetch, decrypt and scan a file at once; the others wait."""
        if self.max_concurrent_scans is not None:
            return self.max_concurrent_scans
        fitting = DEFAULT_FILE_MEMORY_BYTES // max(1, self.max_file_size_bytes)
        return max(1, min(MAX_DEFAULT_CONCURRENT_SCANS, fitting))

    @property
    def verdict_database(self) -> Path:
        return self.state_dir / "verdicts.sqlite3"

    @classmethod
    def load(cls, path: Path) -> ScannerConfig:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ConfigError(f"cannot read the content scanner's config {path}: {error}") from None
        try:
            config = cls(
                listen_host=data["listen_host"],
                listen_port=int(data["listen_port"]),
                synapse_url=data["synapse_url"].rstrip("/"),
                clamd_host=data["clamd_host"],
                clamd_port=int(data["clamd_port"]),
                clamd_timeout_seconds=float(data["clamd_timeout_seconds"]),
                signature_dir=Path(data["signature_dir"]) if data.get("signature_dir") else None,
                state_dir=Path(data["state_dir"]),
                body_key_file=Path(data["body_key_file"]),
                max_file_size_bytes=int(data["max_file_size_bytes"]),
                fetch_timeout_seconds=float(data.get("fetch_timeout_seconds", 60.0)),
                max_concurrent_scans=_optional_int(data.get("max_concurrent_scans")),
            )
        except KeyError as error:
            raise ConfigError(f"{path}: missing key {error.args[0]!r}") from None
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{path}: {error}") from None
        if config.concurrent_scans < 1:
            raise ConfigError(f"{path}: max_concurrent_scans must be at least 1")
        return config


def _optional_int(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int | str) or isinstance(value, bool):
        raise TypeError(f"expected an integer, got {value!r}")
    return int(value)
