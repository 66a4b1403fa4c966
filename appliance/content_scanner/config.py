"""The content scanner's configuration: one JSON file rendered from templates/content_scanner/."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


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
            return cls(
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
            )
        except KeyError as error:
            raise ConfigError(f"{path}: missing key {error.args[0]!r}") from None
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{path}: {error}") from None

