# SPDX-License-Identifier: AGPL-3.0-or-later
"""The `appliance` command: up, down, status (evaluation); check, render, secrets, placement,
service-token, probe, backup, restore and version (both modes; the Ansible roles run them on
the host)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime

from appliance import __version__
from appliance.backup.runner import BackupError, list_snapshots, run_backup, run_restore
from appliance.backup.snapshot import SETTINGS_COPY
from appliance.config.layout import SOURCE_ROOT, Layout
from appliance.config.render import give_secrets_to_owners, placement, render_all, write_all
from appliance.config.secrets_store import ensure_secrets
from appliance.config.settings import SettingsError, load_settings, settings_path
from appliance.evaluation import redis_acl
from appliance.evaluation.lifecycle import EvaluationAppliance, StartError, is_root
from appliance.operations import health
from appliance.operations.service_account import ServiceAccountError, ensure_console_token

EXIT_BAD_SETTINGS = 2
EXIT_START_FAILED = 3
EXIT_SERVICE_ACCOUNT = 4
EXIT_BACKUP_FAILED = 5
# `appliance probe NAME`: the checks of appliance.operations.health, as the console's health
# page runs them.
PROBES = sorted(name for name in dir(health) if name.startswith("check_"))


def _load(args) -> tuple:
    settings, base_dir = load_settings(args.config)
    return settings, Layout.from_settings(settings, base_dir)


def cmd_check(args) -> int:
    settings, layout = _load(args)
    print(f"settings are valid ({settings.mode} mode, state in {layout.state_dir})")
    return 0


def cmd_render(args) -> int:
    settings, layout = _load(args)
    ensure_secrets(layout)
    changed = give_secrets_to_owners(settings, layout)
    files = render_all(
        settings,
        layout,
        clamav_user=args.clamav_user,
        settings_file=settings_path(args.config).resolve(),
    )
    changed += write_all(files)
    # Production's Redis reads its one user from this file (the password's SHA-256).
    if settings.runs_redis and redis_acl.write_acl(
        layout.secret("redis_password"), layout.redis_acl
    ):
        changed.append(layout.redis_acl)
    print(json.dumps({"changed": [str(path) for path in changed]}))
    return 0


def cmd_secrets(args) -> int:
    """Create the missing secrets (as render does), and nothing else: on several hosts, the
    main host makes them before the others copy theirs from it."""
    settings, layout = _load(args)
    ensure_secrets(layout)
    changed = give_secrets_to_owners(settings, layout)
    print(json.dumps({"changed": [str(path) for path in changed]}))
    return 0


def cmd_placement(args) -> int:
    settings, layout = _load(args)
    print(json.dumps(placement(settings, layout)))
    return 0


def cmd_service_token(args) -> int:
    """Create or recover the console's Synapse token the way `up` does (Synapse must run)."""
    settings, layout = _load(args)
    changed = [layout.service_token] if ensure_console_token(settings, layout) else []
    # Run as root in production: the account's password, if just made, goes to Synapse's user.
    changed += give_secrets_to_owners(settings, layout)
    print(json.dumps({"changed": [str(path) for path in changed]}))
    return 0


def cmd_probe(args) -> int:
    """One check of appliance.operations.health; prints its summary, exit status 1 when it fails."""
    arguments = [int(value) if value.isdigit() else value for value in args.arguments]
    check = getattr(health, args.check)(*arguments)
    print(check.summary)
    return 0 if check.ok else 1


def cmd_version(args) -> int:
    import synapse  # only here: the other commands need not load it

    print(
        json.dumps(
            {"appliance": __version__, "synapse": synapse.__version__, "source": str(SOURCE_ROOT)}
        )
    )
    return 0


def cmd_up(args) -> int:
    settings, layout = _load(args)
    appliance = EvaluationAppliance(settings, layout)
    for service, hint in appliance.missing_system_packages().items():
        who = "" if is_root() else " (you are not root, so `make up` could not install it)"
        print(f"! {service} is not installed{who}: {hint}")
        print(f"  going on without {service}: files cannot be scanned until it runs.")
    report = appliance.up()
    for name in report.already_running:
        print(f"= {name} was already running")
    for name, seconds in report.started.items():
        if name in report.restarted:
            print(f"~ {name} restarted (its configuration changed), ready in {seconds:.1f} s")
        else:
            print(f"+ {name} started, ready in {seconds:.1f} s")
    if not report.started:
        print("The appliance was already up: nothing to repair.")
    _print_access(settings, layout)
    print(f"Ready in {report.total_seconds:.1f} s.")
    return 0


def _print_access(settings, layout) -> None:
    print()
    print(
        f"  Matrix client API  {settings.synapse.listen.url}  (server name {settings.server_name})"
    )
    print(f"  Admin console      {settings.console.listen.url}/")
    print(
        f"  Content scanner    {settings.content_scanner.listen.url}/_matrix/media_proxy/unstable"
    )
    if layout.console_first_operator.exists():  # deleted once that operator sets a password
        print(f"  First operator     credentials in {layout.console_first_operator} (mode 0600)")
    if settings.mail.run_local_sink:
        print(
            f"  Mail sink          smtp://{settings.mail.smtp_host}:{settings.mail.smtp_port}, "
            f"messages in {layout.mail_dir}/new"
        )
    print(f"  Logs               {layout.log_dir}")
    print()


def cmd_down(args) -> int:
    settings, layout = _load(args)
    stopped = EvaluationAppliance(settings, layout).down()
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def cmd_status(args) -> int:
    settings, layout = _load(args)
    all_ok = True
    rows = EvaluationAppliance(settings, layout).status()
    # Every process, Synapse's workers included ("synapse-generic1"): the widest name sets it.
    width = max(len(name) for name, _, _ in rows)
    for name, pid, check in rows:
        state = "up" if check.ok else "DOWN"
        process = f"pid {pid}" if pid else "not started by us"
        print(f"{name:{width}} {state:5} {process:18} {check.summary}")
        all_ok = all_ok and check.ok
    # The state's filesystem: a full disk stops Synapse writing (red from 90 %).
    disk = health.check_disk(layout.state_dir)
    print(f"{'disk':10} {'ok' if disk.ok else 'FULL':5} {'':18} {disk.summary}")
    return 0 if all_ok and disk.ok else 1


def cmd_backup(args) -> int:
    settings, base_dir = load_settings(args.config)
    layout = Layout.from_settings(settings, base_dir)
    file = settings_path(args.config)
    report = run_backup(settings, layout, base_dir, file if file.is_file() else None)
    for path in report.created:
        print(f"+ created {path}")
    if report.new_passphrase:
        print("  Keep a copy of the passphrase off this host: without it no backup can be read.")
    for path in report.media_skipped:
        print(f"~ {path} was deleted during the backup (not included)")
    print(
        f"backup {report.snapshot_id[:8]} written to {report.repository} in "
        f"{report.seconds:.1f} s ({', '.join(report.databases)}, {report.media_files} media "
        f"files); {report.snapshots_kept} backups kept"
    )
    return 0


def _utc(restic_time: str) -> str:
    """restic's local RFC 3339 time (nanoseconds) as UTC, to the second."""
    trimmed = re.sub(r"(\.\d{6})\d*", r"\1", restic_time).replace("Z", "+00:00")
    moment = datetime.fromisoformat(trimmed).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def cmd_snapshots(args) -> int:
    """The backups in the repository, oldest first, as JSON (what `restore` accepts)."""
    settings, base_dir = load_settings(args.config)
    layout = Layout.from_settings(settings, base_dir)
    for record in list_snapshots(settings, layout, base_dir):
        print(json.dumps({"id": record["short_id"], "time": _utc(record["time"])}))
    return 0


def cmd_restore(args) -> int:
    settings, base_dir = load_settings(args.config)
    layout = Layout.from_settings(settings, base_dir)
    report = run_restore(settings, layout, base_dir, args.snapshot)
    print(
        f"restored backup {report.snapshot_id[:8]} (taken {report.taken_at}) into "
        f"{layout.state_dir} in {report.seconds:.1f} s; {report.one_time_keys_cleared} "
        "one-time keys cleared (clients upload new ones). Start the appliance: `make up`."
    )
    kept_settings = layout.state_dir / SETTINGS_COPY
    if kept_settings.exists():
        print(f"The settings file at backup time is in {kept_settings} (yours is unchanged).")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="appliance", description=__doc__)
    parser.add_argument(
        "--config", help="settings file (default: $APPLIANCE_CONFIG, else ./appliance.yaml)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("check", help="validate the settings").set_defaults(func=cmd_check)
    render = commands.add_parser("render", help="render every config file from templates/")
    render.add_argument("--clamav-user", help="run clamd as this user (production)")
    render.set_defaults(func=cmd_render)
    commands.add_parser(
        "secrets", help="create the missing secrets; prints the files changed as JSON"
    ).set_defaults(func=cmd_secrets)
    commands.add_parser(
        "placement",
        help="what this host runs (Synapse processes, Redis, PostgreSQL) and the secrets the "
        "main host shares, as JSON",
    ).set_defaults(func=cmd_placement)
    commands.add_parser(
        "service-token",
        help="create or recover the console's Synapse admin token (Synapse must be running); "
        "prints the files changed as JSON",
    ).set_defaults(func=cmd_service_token)
    probe = commands.add_parser("probe", help="run one health check; exit status 1 if it fails")
    probe.add_argument("check", choices=PROBES)
    probe.add_argument("arguments", nargs="*", help="the check's arguments (host, port, ...)")
    probe.set_defaults(func=cmd_probe)
    commands.add_parser(
        "version", help="print the appliance's and Synapse's versions and the source tree (JSON)"
    ).set_defaults(func=cmd_version)
    commands.add_parser(
        "backup", help="back up the appliance into its restic repository (encrypted)"
    ).set_defaults(func=cmd_backup)
    commands.add_parser(
        "snapshots", help="list the backups in the repository (JSON lines, oldest first)"
    ).set_defaults(func=cmd_snapshots)
    restore = commands.add_parser(
        "restore", help="restore a backup into an empty state directory (appliance stopped)"
    )
    restore.add_argument("snapshot", nargs="?", default="latest", help="snapshot id (or latest)")
    restore.set_defaults(func=cmd_restore)
    commands.add_parser("up", help="start the evaluation appliance").set_defaults(func=cmd_up)
    commands.add_parser("down", help="stop what `up` started").set_defaults(func=cmd_down)
    commands.add_parser("status", help="show each service").set_defaults(func=cmd_status)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SettingsError as error:
        if error.source == "the settings":  # found after loading (preflight, backup paths)
            file = settings_path(args.config)
            source = str(file) if file.is_file() else "the default settings"
            error = SettingsError(source, error.problems)
        print(f"appliance {args.command}: {error}", file=sys.stderr)
        print("Nothing was started or changed.", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    except StartError as error:
        print(f"appliance {args.command}: {error}", file=sys.stderr)
        print("What this run started has been stopped again.", file=sys.stderr)
        return EXIT_START_FAILED
    except ServiceAccountError as error:
        print(f"appliance {args.command}: {error}", file=sys.stderr)
        return EXIT_SERVICE_ACCOUNT
    except BackupError as error:
        print(f"appliance {args.command}: {error}", file=sys.stderr)
        return EXIT_BACKUP_FAILED


if __name__ == "__main__":
    sys.exit(main())
