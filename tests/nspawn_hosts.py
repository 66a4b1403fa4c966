# SPDX-License-Identifier: AGPL-3.0-or-later
"""Debian 12 hosts for the provisioning tests: debootstrapped rootfs booted with systemd-nspawn,
converged by `ansible/site.yml` through `community.docker.nsenter`.

A host shares the machine's network namespace unless `boot` is given one the test made (`ip
netns add`): then it sees only the addresses of that namespace. The rootfs is made once and kept
in ROOTFS_CACHE, keyed by what it holds.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from appliance.config.layout import SOURCE_ROOT

ANSIBLE_DIR = SOURCE_ROOT / "ansible"
ROOTFS_CACHE = Path(os.environ.get("APPLIANCE_ROOTFS_CACHE", "/var/cache/appliance-test-rootfs"))
DEBIAN_SUITE = "bookworm"
# What the playbook expects of a fresh host: systemd to boot, Python and apt for Ansible, sudo
# for Ansible to become other users (postgres, clamav, the service user).
ROOTFS_PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3-minimal", "python3-apt", "sudo")
BOOT_TIMEOUT = 120
CONVERGE_TIMEOUT = 1500
SLOWEST_TASKS = 12  # listed at the end of each converge's log, and printed for the re-run
SLOW_TASK = re.compile(r"^(.*) -+ (\d+\.\d+s)$", re.MULTILINE)  # a line of that list
RECAP_LINE = re.compile(r"^(\S+)\s+:\s+(ok=.*)$", re.MULTILINE)  # a host's PLAY RECAP line


def require_tools() -> None:
    missing = [
        tool for tool in ("systemd-nspawn", "debootstrap", "nsenter") if not shutil.which(tool)
    ]
    if os.geteuid() != 0 or missing:
        pytest.fail(
            "the provisioning test boots a Debian 12 container: it needs root and "
            f"systemd-nspawn, debootstrap, nsenter (missing: {missing or 'none'}; root: "
            f"{os.geteuid() == 0}). Install: apt-get install systemd-container debootstrap; "
            "or deselect it with -m 'not provisioning'."
        )


def cached_rootfs() -> Path:
    """A debootstrapped rootfs with ROOTFS_PACKAGES, made once per package list and kept."""
    key = hashlib.sha256(f"{DEBIAN_SUITE} minbase {sorted(ROOTFS_PACKAGES)}".encode()).hexdigest()
    rootfs = ROOTFS_CACHE / key[:16] / "rootfs"
    ROOTFS_CACHE.mkdir(parents=True, exist_ok=True)
    with open(ROOTFS_CACHE / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs must not build it at once
        if not rootfs.exists():
            building = rootfs.with_name("rootfs.partial")
            shutil.rmtree(building, ignore_errors=True)
            subprocess.run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={','.join(ROOTFS_PACKAGES)}",
                    DEBIAN_SUITE,
                    str(building),
                    "http://deb.debian.org/debian",
                ],
                check=True,
                capture_output=True,
                timeout=900,
            )
            building.rename(rootfs)
    return rootfs


def prepare_rootfs(directory: Path, hostname: str) -> None:
    """A fresh copy of the cached rootfs, as a new Debian 12 host would come."""
    subprocess.run(["cp", "-a", "--reflink=auto", str(cached_rootfs()), str(directory)], check=True)
    (directory / "etc/hostname").write_text(hostname + "\n")
    # Packages must not start their services with Debian's defaults on install (PostgreSQL on
    # 5432, nginx on 80, freshclam calling ClamAV's mirrors): a host may share the machine's
    # network. The roles start every service themselves, with the appliance's settings.
    policy = directory / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    sources = (
        "deb http://deb.debian.org/debian bookworm main\n"
        "deb http://deb.debian.org/debian bookworm-updates main\n"
        "deb http://deb.debian.org/debian-security bookworm-security main\n"
    )
    (directory / "etc/apt/sources.list").write_text(sources)


@dataclass
class Container:
    name: str
    rootfs: Path
    process: subprocess.Popen
    leader: int  # the container's init, as the host sees it (ansible_nsenter_pid)

    def run(
        self, *argv: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["nsenter", "--target", str(self.leader), "--all", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def ansible_host(self) -> dict:
        """The inventory variables that reach this container."""
        return {
            "ansible_connection": "community.docker.nsenter",
            "ansible_nsenter_pid": self.leader,
            "ansible_python_interpreter": "/usr/bin/python3",
        }

    def stop(self) -> None:
        self.process.terminate()  # nspawn asks the container's systemd to power off
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _leader_pid(nspawn: subprocess.Popen) -> int:
    deadline = time.monotonic() + BOOT_TIMEOUT
    while time.monotonic() < deadline:
        children = Path(f"/proc/{nspawn.pid}/task/{nspawn.pid}/children")
        if children.exists() and children.read_text().split():
            return int(children.read_text().split()[0])
        if nspawn.poll() is not None:
            raise RuntimeError(f"systemd-nspawn exited with {nspawn.returncode}")
        time.sleep(0.2)
    raise RuntimeError("systemd-nspawn started no container")


def boot(rootfs: Path, log: Path, name: str, network_namespace: str | None = None) -> Container:
    """Boots `rootfs` as the machine `name`; in /run/netns/`network_namespace` when given."""
    # In a namespace of its own the host manages its network as a real one does: its firewall
    # (nftables) needs CAP_NET_ADMIN, which nspawn grants only with a private network.
    network = (
        [f"--network-namespace-path=/run/netns/{network_namespace}", "--capability=CAP_NET_ADMIN"]
        if network_namespace
        else []
    )
    process = subprocess.Popen(
        [
            "systemd-nspawn",
            "--boot",
            "--register=no",
            "--keep-unit",
            f"--directory={rootfs}",
            f"--machine={name}",
            "--console=passive",
            *network,
        ],
        stdin=subprocess.DEVNULL,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    container = Container(name, rootfs, process, _leader_pid(process))
    deadline = time.monotonic() + BOOT_TIMEOUT
    state = ""
    while state not in ("running", "degraded"):
        if time.monotonic() > deadline:
            container.stop()
            raise RuntimeError(f"the container did not boot: {state}\n{log.read_text()[-2000:]}")
        time.sleep(0.5)  # until its systemd answers on its bus, then until boot is done
        state = container.run(
            "systemctl", "is-system-running", "--wait", check=False
        ).stdout.strip()
    return container


# --- Ansible -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Converge:
    seconds: float
    recaps: dict[str, str] = field(default_factory=dict)  # each host's PLAY RECAP counters
    log: Path | None = None

    @property
    def recap(self) -> str:
        return "; ".join(f"{host}: {counters}" for host, counters in self.recaps.items())

    @property
    def changed(self) -> int:
        """Changed tasks, all hosts together."""
        return sum(int(re.search(r"changed=(\d+)", c).group(1)) for c in self.recaps.values())

    def slowest_tasks(self) -> list[str]:
        """profile_tasks's recap: "<role> : <task> ---- 12.34s", slowest first."""
        recap = self.log.read_text().rsplit("TASKS RECAP", 1)[-1]
        return [f"{task} {seconds}" for task, seconds in SLOW_TASK.findall(recap)]


def converge(inventory_data: dict, log: Path, *extra: str, playbook: str = "site.yml") -> Converge:
    """Runs `playbook` on the inventory; fails the test with the log's end if it fails."""
    inventory_file = log.with_suffix(".inventory.yml")
    inventory_file.write_text(yaml.safe_dump(inventory_data))
    began = time.monotonic()
    with log.open("w") as output:
        result = subprocess.run(
            [
                str(Path(sys.executable).with_name("ansible-playbook")),
                "-i",
                str(inventory_file),
                playbook,
                *extra,
            ],
            cwd=ANSIBLE_DIR,
            stdout=output,
            stderr=subprocess.STDOUT,
            # TMPDIR: the release archives packed on the controller stay with the test's files.
            # profile_tasks: each log ends with its slowest tasks (where a converge spends time).
            env={
                **os.environ,
                "ANSIBLE_NOCOLOR": "1",
                "TMPDIR": str(log.parent),
                "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
                "PROFILE_TASKS_TASK_OUTPUT_LIMIT": str(SLOWEST_TASKS),
            },
            timeout=CONVERGE_TIMEOUT,
        )
    seconds = time.monotonic() - began
    text = log.read_text()
    assert result.returncode == 0, f"{playbook} failed ({log}):\n{text[-6000:]}"
    play_recap = text.rsplit("PLAY RECAP", 1)[-1]
    recaps = {host: " ".join(counters.split()) for host, counters in RECAP_LINE.findall(play_recap)}
    state = Converge(seconds, recaps, log)
    print(f"\nconverge {log.stem}: {seconds:.0f} s: {state.recap}")
    return state
