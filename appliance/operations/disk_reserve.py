# SPDX-License-Identifier: AGPL-3.0-or-later
"""Room kept aside on the state's filesystem, given back when the disk fills up.

A full disk must not lock the operators out of the console that tells them so: logging in
writes a few kilobytes to the console's SQLite database (the login, the lockout's attempt,
the audit entry), and SQLite needs room for its `-wal` and `-shm` files just to open it. So
the console keeps a preallocated file of RESERVE_BYTES in the state directory (outside what
backups copy). When the free space falls below that size, the file is deleted before the
request is served, which gives those writes their room; once space is freed, it is made again.

Why a reserve rather than a console that logs in without writing: the server-side logins,
the lockout and the audit log all rest on those writes; keeping them whole on a full disk
costs one file. The room is the filesystem's, so another process writing at that moment can
take it too: it buys time for the operators, it is not a quota.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)
RESERVE_BYTES = 16 << 20
FILE_NAME = "disk-reserve"


class DiskReserve:
    def __init__(self, directory: Path, size: int = RESERVE_BYTES):
        self.path = directory / FILE_NAME
        self.size = size

    def free_bytes(self) -> int:
        stats = os.statvfs(self.path.parent)
        return stats.f_bavail * stats.f_frsize

    def keep(self) -> None:
        """Release the reserve if the disk is nearly full, or make it again once it is not.

        Never raises: a reserve that cannot be kept must not break the request it runs in."""
        try:
            free = self.free_bytes()
            if free < self.size and self.path.exists():
                self.path.unlink()
                logger.warning(
                    "disk almost full (%d bytes free): released the %d-byte reserve at %s",
                    free,
                    self.size,
                    self.path,
                )
            elif free >= 2 * self.size and not self.path.exists():
                self._make()
        except OSError as error:
            logger.warning("cannot keep the disk reserve %s: %s", self.path, error)

    def _make(self) -> None:
        partial = self.path.with_name(self.path.name + ".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            # Really allocated (not a sparse file), so deleting it really frees the room.
            os.posix_fallocate(fd, 0, self.size)
        except OSError:
            os.close(fd)
            partial.unlink(missing_ok=True)
            raise
        os.close(fd)
        partial.rename(self.path)
