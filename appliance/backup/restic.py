# SPDX-License-Identifier: AGPL-3.0-or-later
"""The encrypted repository: Debian's restic, driven through its command line.

restic encrypts everything it stores with the repository's passphrase (read from a 0600 file,
never from the command line or the environment's value), deduplicates, and writes a snapshot's
record last: a run that fails leaves no snapshot, only unreferenced data that `forget --prune`
removes. The same code sends backups off the host when the repository is an sftp:, rest: or
s3: URL.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

RESTIC = "restic"
INSTALL_HINT = "apt-get install -y restic  (as root)"
TAG = "appliance"


def location(configured: str | None, base_dir: Path, *, production_directory: Path | None) -> str:
    """Where the repository is: `configured` (a URL, or a path from `base_dir`), else
    <production_directory>/restic in production, else ./backups beside the settings file."""
    if configured is None:
        if production_directory is not None:
            return str(production_directory / "restic")
        return str((base_dir / "backups").resolve())
    if is_url(configured):
        return configured
    return str((base_dir / configured).resolve())


def is_url(location: str) -> bool:
    """A restic URL (sftp:host:/path, rest:https://..., s3:...), not a local path."""
    scheme = location.split(":", 1)[0]
    return ":" in location and "/" not in scheme


class ResticError(Exception):
    """restic is missing or one of its commands failed (its own message is included)."""


@dataclass(frozen=True)
class Repository:
    location: str
    passphrase_file: Path

    def _run(self, *arguments: str, cwd: Path | None = None) -> str:
        if shutil.which(RESTIC) is None:
            raise ResticError(f"restic is not installed: {INSTALL_HINT}")
        env = {
            **os.environ,
            "RESTIC_REPOSITORY": self.location,
            "RESTIC_PASSWORD_FILE": str(self.passphrase_file),
        }
        env.pop("RESTIC_PASSWORD", None)  # the file, and only the file, holds the passphrase
        result = subprocess.run(
            [RESTIC, *arguments],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            message = result.stderr.strip() or result.stdout.strip()
            raise ResticError(f"restic {arguments[0]} failed: {message}")
        return result.stdout

    def exists(self) -> bool:
        try:
            self._run("cat", "config")
        except ResticError:
            return False
        return True

    def ensure(self) -> bool:
        """Create the repository if it does not exist; return whether it was created."""
        if self.exists():
            return False
        if not is_url(self.location):
            Path(self.location).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._run("init")
        return True

    def backup(self, directory: Path, host: str) -> str:
        """Back up `directory`; return the new snapshot's id."""
        output = self._run("backup", "--json", "--tag", TAG, "--host", host, str(directory))
        for line in output.splitlines():
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("message_type") == "summary":
                return message["snapshot_id"]
        raise ResticError("restic backup reported no snapshot")

    def forget(self, *, daily: int, weekly: int, monthly: int) -> None:
        """Apply the retention, and delete the data no snapshot refers to any more."""
        self._run(
            "forget",
            "--tag",
            TAG,
            "--keep-daily",
            str(daily),
            "--keep-weekly",
            str(weekly),
            "--keep-monthly",
            str(monthly),
            "--prune",
        )

    def snapshots(self) -> list[dict]:
        """Every snapshot of the appliance, oldest first (restic's JSON records)."""
        return json.loads(self._run("snapshots", "--json", "--tag", TAG) or "[]")

    def restore(self, snapshot_id: str, target: Path) -> None:
        self._run("restore", snapshot_id, "--target", str(target))
