"""A small client for clamd's TCP protocol: PING, VERSION and INSTREAM scans.

Every failure (refused, timed out, a reply we do not understand) raises ClamdUnavailable, so
callers can fail closed: no verdict is never read as "clean".
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass

# clamd reads INSTREAM data in chunks; 1 MiB keeps syscalls few without buffering much.
CHUNK_SIZE = 1 << 20


class ClamdUnavailable(Exception):
    """clamd could not give an answer: down, slow, or confused."""


@dataclass(frozen=True)
class ScanResult:
    clean: bool
    signature: str | None = None  # the name of what was found, when not clean


@dataclass(frozen=True)
class ClamdVersion:
    engine: str  # "ClamAV 1.4.6"
    database_version: str | None  # None with custom signature files only (no daily.cvd)
    database_date: str | None


@dataclass(frozen=True)
class ClamdClient:
    host: str = "127.0.0.1"
    port: int = 3310
    timeout: float = 30.0

    def _connect(self) -> socket.socket:
        try:
            return socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as error:
            raise ClamdUnavailable(
                f"cannot connect to clamd at {self.host}:{self.port}: {error}"
            ) from None

    def _command(self, command: str) -> str:
        with self._connect() as connection:
            try:
                connection.sendall(f"z{command}\0".encode())
                return _read_reply(connection)
            except OSError as error:
                raise ClamdUnavailable(f"clamd {command} failed: {error}") from None

    def ping(self) -> None:
        reply = self._command("PING")
        if reply != "PONG":
            raise ClamdUnavailable(f"clamd answered PING with {reply!r}")

    def version(self) -> ClamdVersion:
        reply = self._command("VERSION")
        parts = reply.split("/")
        if not parts[0].startswith("ClamAV "):
            raise ClamdUnavailable(f"clamd answered VERSION with {reply!r}")
        return ClamdVersion(
            engine=parts[0],
            database_version=parts[1] if len(parts) > 1 else None,
            database_date=parts[2] if len(parts) > 2 else None,
        )

    def scan_chunks(self, chunks: Iterable[bytes]) -> ScanResult:
        """Stream the data to clamd and return its verdict."""
        with self._connect() as connection:
            try:
                connection.sendall(b"zINSTREAM\0")
                for chunk in chunks:
                    for start in range(0, len(chunk), CHUNK_SIZE):
                        piece = chunk[start : start + CHUNK_SIZE]
                        connection.sendall(struct.pack("!L", len(piece)) + piece)
                connection.sendall(struct.pack("!L", 0))
                reply = _read_reply(connection)
            except OSError as error:
                raise ClamdUnavailable(f"clamd scan failed: {error}") from None
        return _parse_scan_reply(reply)

    def scan_bytes(self, data: bytes) -> ScanResult:
        return self.scan_chunks([data])


def _read_reply(connection: socket.socket) -> str:
    buffer = bytearray()
    while not buffer.endswith(b"\0"):
        data = connection.recv(4096)
        if not data:
            break
        buffer += data
    if not buffer:
        raise ClamdUnavailable("clamd closed the connection without answering")
    return buffer.rstrip(b"\0").decode("utf-8", "replace").strip()


def _parse_scan_reply(reply: str) -> ScanResult:
    # "stream: OK", "stream: Eicar-Signature FOUND", "INSTREAM size limit exceeded. ERROR"
    if reply.endswith(" FOUND"):
        signature = reply.removesuffix(" FOUND").split(": ", 1)[-1]
        return ScanResult(clean=False, signature=signature)
    if reply == "stream: OK":
        return ScanResult(clean=True)
    raise ClamdUnavailable(f"clamd could not scan the file: {reply}")
