# SPDX-License-Identifier: AGPL-3.0-or-later
"""One backup run and one restore, as `appliance backup` / `appliance restore` (and the
production timer) run them.

Backup: take a snapshot into a staging directory, hand it to restic, apply the retention,
remove the staging directory whatever happened. Only one run at a time (a lock file); a run
killed half-way leaves a staging directory that the next run removes, and no snapshot.

Restore: refused while any service of the appliance answers, and over a state directory that
holds anything (it is never overwritten: move it aside). The snapshot is unpacked beside the
state directory, checked, Synapse's one-time keys are cleared (Synapse's backup documentation:
an older database would hand out one-time keys again and break decryption), and only then is
it renamed into place: a restore that fails leaves no state directory behind.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import socket
import sqlite3
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from appliance.backup import restic, snapshot
from appliance.backup.restic import Repository, ResticError
from appliance.config import preflight
from appliance.config.layout import Layout
from appliance.config.settings import PostgresDatabase, Settings, SettingsError
from appliance.evaluation.lifecycle import EvaluationAppliance, make_private
from appliance.evaluation.supervisor import running_process

STAGING = "backup-staging"
LOCK = "backup.lock"
RESTORED_RECORD = "restored-from-backup.json"

# Refusals and failures: constants, so that tests assert the very text an operator reads.
REFUSED_RUNNING = (
    "restore refused: the appliance is running ({services}); stop it first "
    "(`make down`, or `systemctl stop` its units), then restore"
)
REFUSED_NOT_EMPTY = (
    "restore refused: {state_dir} is not empty; a restore never writes over existing state: "
    "move it aside first, then restore"
)
REFUSED_NO_BACKUP = "restore refused: the repository {repository} holds no backup of the appliance"
REFUSED_UNKNOWN_SNAPSHOT = "restore refused: no backup {snapshot} in the repository"
REFUSED_OTHER_SERVER = (
    "restore refused: the backup is of {backup}, these settings are for {settings} "
    "(a Matrix server name cannot change)"
)
REFUSED_OTHER_ENGINE = (
    "restore refused: the backup holds a {backup} database, these settings use {settings}"
)
REFUSED_PG_NOT_EMPTY = (
    "restore refused: the PostgreSQL database {name} already has tables; Synapse's "
    "documentation forbids restoring over them: drop and create it empty first"
)
ALREADY_RUNNING = "another backup is running (lock {lock})"
NOTHING_TO_BACK_UP = "nothing to back up: {database} does not exist (has the appliance run here?)"
PASSPHRASE_MISSING = (
    "backup.passphrase_file: {path} does not exist; no backup can be read without it"
)
PASSPHRASE_OPEN = (
    "backup.passphrase_file: {path} is open to other users (mode {mode:o}); chmod 600 it"
)
INSIDE_STATE = (
    "{key}: {path} is inside paths.state_dir ({state_dir}), which a restore starts from "
    "empty: keep it elsewhere"
)


class BackupError(Exception):
    """A backup or restore that failed or was refused; nothing was half-written."""


@dataclass
class BackupReport:
    snapshot_id: str
    seconds: float
    databases: list[str]
    media_files: int
    media_skipped: list[str]
    snapshots_kept: int
    repository: str
    created: list[str] = field(default_factory=list)  # the passphrase file, the repository
    new_passphrase: bool = False


@dataclass
class RestoreReport:
    snapshot_id: str
    taken_at: str
    seconds: float
    one_time_keys_cleared: int


# Where backups go --------------------------------------------------------------------------
def repository_location(settings: Settings, base_dir: Path) -> str:
    """The restic repository: the setting (a URL, or a path from the settings' directory), else
    ./backups beside the settings file (evaluation) or <backup.directory>/restic (production)."""
    return restic.location(
        settings.backup.repository,
        base_dir,
        production_directory=settings.backup.directory if settings.mode == "production" else None,
    )


def passphrase_path(settings: Settings, base_dir: Path) -> Path:
    return (base_dir / settings.backup.passphrase_file).resolve()


def repository(
    settings: Settings, layout: Layout, base_dir: Path, *, create_passphrase: bool
) -> tuple[Repository, bool]:
    """The repository of these settings, checked; return it and whether the passphrase file
    was just made. Raises SettingsError naming the key."""
    location, passphrase = _checked_locations(settings, layout, base_dir)
    created = False
    if not passphrase.exists():
        if not create_passphrase:
            raise SettingsError("the settings", [PASSPHRASE_MISSING.format(path=passphrase)])
        passphrase.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(passphrase, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
        created = True
    mode = passphrase.stat().st_mode & 0o777
    if mode & 0o077:
        raise SettingsError("the settings", [PASSPHRASE_OPEN.format(path=passphrase, mode=mode)])
    return Repository(location, passphrase), created


def _checked_locations(settings: Settings, layout: Layout, base_dir: Path) -> tuple[str, Path]:
    """The repository and the passphrase file, refused (SettingsError naming the key) inside
    the state directory; nothing is created."""
    location = repository_location(settings, base_dir)
    passphrase = passphrase_path(settings, base_dir)
    problems = []
    if not restic.is_url(location) and Path(location).is_relative_to(layout.state_dir):
        problems.append(
            INSIDE_STATE.format(key="backup.repository", path=location, state_dir=layout.state_dir)
        )
    if passphrase.is_relative_to(layout.state_dir):
        problems.append(
            INSIDE_STATE.format(
                key="backup.passphrase_file", path=passphrase, state_dir=layout.state_dir
            )
        )
    if problems:
        raise SettingsError("the settings", problems)
    return location, passphrase


# Backup ------------------------------------------------------------------------------------
def run_backup(
    settings: Settings, layout: Layout, base_dir: Path, settings_file: Path | None = None
) -> BackupReport:
    began = time.monotonic()
    _checked_locations(settings, layout, base_dir)  # settings first, as everywhere
    synapse_database = layout.synapse_dir / "homeserver.db"
    if settings.synapse.database.engine == "sqlite" and not synapse_database.exists():
        raise BackupError(NOTHING_TO_BACK_UP.format(database=synapse_database))
    repo, made_passphrase = repository(settings, layout, base_dir, create_passphrase=True)
    created = [str(repo.passphrase_file)] if made_passphrase else []
    lock_path = layout.state_dir / LOCK
    with open(lock_path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError(ALREADY_RUNNING.format(lock=lock_path)) from None
        staging = layout.state_dir / STAGING
        shutil.rmtree(staging, ignore_errors=True)  # left by a run that was killed
        try:
            if repo.ensure():
                created.append(repo.location)
            taken = snapshot.take(settings, layout, staging, settings_file)
            snapshot_id = repo.backup(staging, host=settings.server_name)
        except (snapshot.SnapshotError, ResticError, OSError) as error:
            raise BackupError(f"no backup was recorded: {error}") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        backup = settings.backup
        try:
            repo.forget(
                daily=backup.keep_daily, weekly=backup.keep_weekly, monthly=backup.keep_monthly
            )
            kept = len(repo.snapshots())
        except ResticError as error:
            raise BackupError(
                f"backup {snapshot_id[:8]} was recorded, but the retention failed: {error}"
            ) from None
    return BackupReport(
        snapshot_id=snapshot_id,
        seconds=time.monotonic() - began,
        databases=taken.databases,
        media_files=taken.media_files,
        media_skipped=taken.media_skipped,
        snapshots_kept=kept,
        repository=repo.location,
        created=created,
        new_passphrase=made_passphrase,
    )


# Restore -----------------------------------------------------------------------------------
def running_services(settings: Settings, layout: Layout) -> list[str]:
    """The services of these settings that run: recorded by `up` and alive, or answering on
    their port (production's systemd units, or anything else holding it)."""
    running = {
        spec.name
        for spec in EvaluationAppliance(settings, layout).specs()
        if running_process(spec) is not None
    }
    for service, _, host, port in preflight.bound_ports(settings):
        if _answers(host, port):
            running.add(service)
    return sorted(running)


def _answers(host: str, port: int) -> bool:
    connect_to = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    try:
        with socket.create_connection((connect_to, port), timeout=2):
            return True
    except OSError:
        return False


def run_restore(
    settings: Settings, layout: Layout, base_dir: Path, snapshot_id: str = "latest"
) -> RestoreReport:
    began = time.monotonic()
    running = running_services(settings, layout)
    if running:
        raise BackupError(REFUSED_RUNNING.format(services=", ".join(running)))
    state = layout.state_dir
    if state.exists() and any(state.iterdir()):
        raise BackupError(REFUSED_NOT_EMPTY.format(state_dir=state))
    repo, _ = repository(settings, layout, base_dir, create_passphrase=False)
    chosen = _choose(repo, snapshot_id)
    work = state.parent / f".{state.name}.restoring"
    shutil.rmtree(work, ignore_errors=True)  # left by a restore that was killed
    work.mkdir(mode=0o700, parents=True)
    try:
        repo.restore(chosen["id"], work)
        root = work / chosen["paths"][0].lstrip("/")
        manifest = json.loads((root / snapshot.MANIFEST).read_text())
        _check_matches(manifest, settings)
        cleared = _restore_synapse_database(settings, layout, root)
        record = {**manifest, "snapshot_id": chosen["id"], "one_time_keys_cleared": cleared}
        (root / snapshot.MANIFEST).unlink()
        (root / RESTORED_RECORD).write_text(json.dumps(record, indent=2) + "\n")
        if layout.one_user:
            make_private(root)  # evaluation; production keeps each file's recorded owner and mode
        if state.exists():
            state.rmdir()  # empty, checked above
        os.rename(root, state)
    except (ResticError, OSError, ValueError, sqlite3.Error) as error:
        raise BackupError(f"restore failed, nothing was put in place: {error}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return RestoreReport(chosen["id"], manifest["taken_at"], time.monotonic() - began, cleared)


def list_snapshots(settings: Settings, layout: Layout, base_dir: Path) -> list[dict]:
    """Every backup of the appliance in the repository, oldest first (restic's records)."""
    repo, _ = repository(settings, layout, base_dir, create_passphrase=False)
    try:
        return repo.snapshots()
    except ResticError as error:
        raise BackupError(str(error)) from None


def _choose(repo: Repository, snapshot_id: str) -> dict:
    try:
        snapshots = repo.snapshots()
    except ResticError as error:
        raise BackupError(str(error)) from None
    if not snapshots:
        raise BackupError(REFUSED_NO_BACKUP.format(repository=repo.location))
    if snapshot_id == "latest":
        return snapshots[-1]
    for candidate in snapshots:
        if snapshot_id in (candidate["id"], candidate.get("short_id")):
            return candidate
    raise BackupError(REFUSED_UNKNOWN_SNAPSHOT.format(snapshot=snapshot_id))


def _check_matches(manifest: dict, settings: Settings) -> None:
    if manifest.get("format") != snapshot.FORMAT:
        raise BackupError(f"restore refused: unknown backup format {manifest.get('format')!r}")
    if manifest["server_name"] != settings.server_name:
        raise BackupError(
            REFUSED_OTHER_SERVER.format(
                backup=manifest["server_name"], settings=settings.server_name
            )
        )
    engine = settings.synapse.database.engine
    if manifest["database_engine"] != engine:
        raise BackupError(
            REFUSED_OTHER_ENGINE.format(backup=manifest["database_engine"], settings=engine)
        )


def _restore_synapse_database(settings: Settings, layout: Layout, root: Path) -> int:
    """Put Synapse's database back without its one-time keys; return how many were cleared."""
    database = settings.synapse.database
    if isinstance(database, PostgresDatabase):
        dump = root / snapshot.PGDUMP
        _pg_restore(database, dump)
        dump.unlink()
        return 0  # pg_dump left their rows out (--exclude-table-data)
    path = root / (layout.synapse_dir / "homeserver.db").relative_to(layout.state_dir)
    if not path.exists():
        return 0
    connection = sqlite3.connect(path)
    try:
        with connection:
            return connection.execute("DELETE FROM e2e_one_time_keys_json").rowcount
    finally:
        connection.close()


def _pg_restore(database: PostgresDatabase, dump: Path) -> None:
    """Into an empty database only (Synapse's documentation), in one transaction; the dump is
    read on stdin, so PostgreSQL's superuser needs no access to our files."""

    def run(program: str, *arguments: str, stdin=None) -> str:
        argv, env = snapshot.postgres_command(database, program, *arguments)
        result = subprocess.run(
            argv, env=env, stdin=stdin, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise BackupError(f"{program} failed: {result.stderr.strip()}")
        return result.stdout

    count_tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
    tables = run("psql", "--tuples-only", "--no-align", "--command", count_tables)
    if int(tables.strip() or 0):
        raise BackupError(REFUSED_PG_NOT_EMPTY.format(name=database.name))
    with open(dump, "rb") as stream:
        run(
            "pg_restore",
            "--exit-on-error",
            "--single-transaction",  # all of it or nothing
            "--no-owner",
            f"--role={database.user}",
            stdin=stream,
        )
    run("psql", "--command", "TRUNCATE e2e_one_time_keys_json")
