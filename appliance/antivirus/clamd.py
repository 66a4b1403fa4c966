# SPDX-License-Identifier: AGPL-3.0-or-later
"""A small client for clamd's TCP protocol: PING, VERSION, RELOAD and INSTREAM scans.

Every failure (refused, timed out, a reply we do not understand) raises ClamdUnavailable, so
callers can fail closed: no verdict is never read as "clean".
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from appliance.antivirus.verdict import Verdict

# clamd reads INSTREAM data in chunks; 1 MiB keeps syscalls few without buffering much.
CHUNK_SIZE = 1 << 20


class ClamdUnavailable(Exception):
    """clamd could not give an answer: down, slow, or confused."""


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

    def reload(self) -> None:
        """Ask clamd to reload its signature databases.

        clamd answers at once and loads them in the background (ConcurrentDatabaseReload, its
        default); nothing in its protocol says when the new ones are in use. A RELOAD that comes
        while a reload is running is merged into it. See clamd_signatures.SignatureWatch.
        """
        reply = self._command("RELOAD")
        if reply != "RELOADING":
            raise ClamdUnavailable(f"clamd answered RELOAD with {reply!r}")

    def scan_chunks(self, chunks: Iterable[bytes | memoryview]) -> Verdict:
        """Stream the data to clamd and return its verdict."""
        with self._connect() as connection:
            try:
                connection.sendall(b"zINSTREAM\0")
                for chunk in chunks:
                    view = memoryview(chunk)
                    for start in range(0, len(view), CHUNK_SIZE):
                        piece = view[start : start + CHUNK_SIZE]
                        # One send per piece (a second small one would meet Nagle's delay);
                        # the copy is one piece, never the whole file.
                        connection.sendall(struct.pack("!L", len(piece)) + piece)
                connection.sendall(struct.pack("!L", 0))
                reply = _read_reply(connection)
            except OSError as error:
                raise ClamdUnavailable(f"clamd scan failed: {error}") from None
        return _parse_scan_reply(reply)

    def scan_bytes(self, data: bytes) -> Verdict:
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


def _parse_scan_reply(reply: str) -> Verdict:
    # "stream: OK", "stream: Eicar-Signature FOUND", "INSTREAM size limit exceeded. ERROR"
    if reply.endswith(" FOUND"):
        signature = reply.removesuffix(" FOUND").split(": ", 1)[-1]
        return Verdict(clean=False, signature=signature)
    if reply == "stream: OK":
        return Verdict(clean=True)
    raise ClamdUnavailable(f"clamd could not scan the file: {reply}")
