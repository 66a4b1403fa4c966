# SPDX-License-Identifier: AGPL-3.0-or-later
"""A consistent copy of what the appliance cannot rebuild, laid out as the state directory.

The copy lives in a staging directory beside the live state (same file system: media is
hard-linked, not copied). Its paths are the state directory's own, so a restore is the staging
tree put back where the state directory was; `MANIFEST` says what is in it.

Order matters: Synapse's database first, then the media. A media file is written before the
database row that names it, so every file the copied database knows is complete on disk by
then; a file uploaded or deleted meanwhile is either taken whole, or skipped (never fatal).

Not copied: what `up` renders again from the settings (homeserver.yaml, clamd.conf, the
evaluation signatures), logs, pidfiles, the evaluation mail sink, remote media and URL previews
(Synapse fetches them again, see its backup documentation), and any SQLite -wal/-shm/-journal
file (the backup API copies committed pages only).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from appliance import __version__
from appliance.config.layout import Layout
from appliance.config.settings import PostgresDatabase, Settings

MANIFEST = "MANIFEST.json"
FORMAT = 1
# Where Synapse's database goes in the staging tree when it is PostgreSQL's.
PGDUMP = "synapse/synapse.pgdump"
# The settings file, kept for reference (a restore does not overwrite the one in use).
SETTINGS_COPY = "backup-settings/appliance.yaml"
# Synapse's own media: the only copy anywhere. Remote media and URL previews are caches.
MEDIA_KEPT = ("local_content", "local_thumbnails")
# SQLite's companions: never copied (a live -wal next to a clean copy restores a torn database).
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")
# Whole directories of small files: secrets, keys, the service token.
FILE_TREES = ("secrets", "console", "content-scanner", "service-token")


class SnapshotError(Exception):
    """The snapshot could not be taken; the staging directory is removed by the caller."""


@dataclass
class Snapshot:
    root: Path
    databases: list[str] = field(default_factory=list)
    media_files: int = 0
    media_skipped: list[str] = field(default_factory=list)  # vanished while being copied
    files: int = 0


def sqlite_databases(settings: Settings, layout: Layout) -> list[Path]:
    """The SQLite databases to copy through the backup API, Synapse's first."""
    databases = []
    if settings.synapse.database.engine == "sqlite":
        databases.append(layout.synapse_dir / "homeserver.db")
    databases.append(layout.console_database)
    databases.append(layout.content_scanner_dir / "verdicts.sqlite3")
    return databases


def take(settings: Settings, layout: Layout, staging: Path, settings_file: Path | None) -> Snapshot:
    """Fill `staging` (which must not exist) with a consistent copy of the state."""
    staging.mkdir(mode=0o700, parents=True)
    snapshot = Snapshot(staging)
    state = layout.state_dir
    database_paths = sqlite_databases(settings, layout)
    if isinstance(settings.synapse.database, PostgresDatabase):
        _pg_dump(settings.synapse.database, staging / PGDUMP)
        snapshot.databases.append(PGDUMP)
    for database in database_paths:
        if database.exists():
            relative = database.relative_to(state)
            copy_sqlite(database, staging / relative)
            snapshot.databases.append(str(relative))
    _link_media(layout, staging, snapshot)
    skip = {path.resolve() for path in database_paths}
    for tree in FILE_TREES:
        _copy_tree(state / tree, staging / tree, skip, snapshot)
    if settings_file is not None and settings_file.is_file():
        _copy_file(settings_file, staging / SETTINGS_COPY)
    manifest = {
        "format": FORMAT,
        "appliance": __version__,
        "server_name": settings.server_name,
        "database_engine": settings.synapse.database.engine,
        "taken_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "databases": snapshot.databases,
        "media_files": snapshot.media_files,
        "media_skipped": snapshot.media_skipped,
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    if os.geteuid() == 0:
        mirror_owners(staging, state)
    return snapshot


def mirror_owners(staging: Path, state: Path) -> None:
    """Production (root, one user per service): give each copied file and directory the owner
    and mode of the live one, so that restic records them and a restore gives every service its
    own files back (Synapse's media directories, the console's database). Hard links are the
    live files already; what has no live counterpart (the dump, the manifest) stays root's."""
    for directory, subdirectories, names in os.walk(staging):
        for name in [*subdirectories, *names]:
            copy = Path(directory) / name
            try:
                live = os.lstat(state / copy.relative_to(staging))
            except FileNotFoundError:
                continue
            status = os.lstat(copy)
            if status.st_ino == live.st_ino or stat.S_ISLNK(status.st_mode):
                continue
            os.chown(copy, live.st_uid, live.st_gid)
            os.chmod(copy, stat.S_IMODE(live.st_mode))


def copy_sqlite(source: Path, target: Path) -> None:
    """A transactionally consistent copy of a live SQLite database (its WAL included)."""
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    live = sqlite3.connect(source, timeout=30)
    copy = sqlite3.connect(target)
    try:
        live.backup(copy)
        # The copy is a standalone file: no WAL of its own to ship or forget.
        copy.execute("PRAGMA journal_mode=DELETE")
    except sqlite3.Error as error:
        raise SnapshotError(f"cannot copy the database {source}: {error}") from None
    finally:
        copy.close()
        live.close()


def _pg_dump(database: PostgresDatabase, target: Path) -> None:
    """pg_dump's custom format, without the one-time keys (Synapse's backup documentation); the
    dump comes on stdout, so PostgreSQL's superuser needs no access to the staging directory."""
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    argv, env = postgres_command(
        database, "pg_dump", "--format=custom", "--exclude-table-data=e2e_one_time_keys_json"
    )
    with open(target, "wb") as output:
        result = subprocess.run(argv, env=env, stdout=output, stderr=subprocess.PIPE, check=False)
    if result.returncode != 0:
        raise SnapshotError(f"pg_dump failed: {result.stderr.decode(errors='replace').strip()}")


def postgres_command(
    database: PostgresDatabase, program: str, *arguments: str
) -> tuple[list[str], dict]:
    """A PostgreSQL client's command line and environment for Synapse's database: with its
    password when set, else (production, as root, over the socket) as PostgreSQL's superuser by
    peer authentication, else as Synapse's role."""
    env = dict(os.environ)
    prefix: list[str] = []
    user = [f"--username={database.user}"]
    if database.password is not None:
        env["PGPASSWORD"] = database.password.get_secret_value()
    elif os.geteuid() == 0 and database.host.startswith("/"):
        prefix, user = ["runuser", "-u", "postgres", "--"], []
    connect = [f"--host={database.host}", f"--port={database.port}", *user]
    return [*prefix, program, *connect, f"--dbname={database.name}", *arguments], env


def _link_media(layout: Layout, staging: Path, snapshot: Snapshot) -> None:
    for kept in MEDIA_KEPT:
        source_root = layout.media_store / kept
        for directory, _, names in os.walk(source_root):
            target_dir = staging / Path(directory).relative_to(layout.state_dir)
            target_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            for name in names:
                source = Path(directory) / name
                try:
                    _link_or_copy(source, target_dir / name)
                except FileNotFoundError:
                    # Deleted (quarantined, purged) since it was listed: not an error.
                    snapshot.media_skipped.append(str(source.relative_to(layout.state_dir)))
                    continue
                snapshot.media_files += 1


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError as error:
        if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        shutil.copy2(source, target)


def _copy_tree(source: Path, target: Path, skip: set[Path], snapshot: Snapshot) -> None:
    if not source.is_dir():
        return
    for directory, _, names in os.walk(source):
        for name in names:
            path = Path(directory) / name
            if path.resolve() in skip or name.endswith(SQLITE_COMPANIONS):
                continue
            if name.endswith((".sqlite3", ".db")):
                continue  # a database not named above: never copied file by file
            try:
                _copy_file(path, target / path.relative_to(source))
            except FileNotFoundError:
                continue  # a temporary file that went away: not part of the state
            snapshot.files += 1


def _copy_file(source: Path, target: Path) -> None:
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    shutil.copy2(source, target)
