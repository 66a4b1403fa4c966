# SPDX-License-Identifier: AGPL-3.0-or-later
"""A private network for tests: network namespaces joined by a bridge, on a /24 of 10.0.0.0/8
that no route of the machine uses.

Each namespace gets one veth into the bridge, its own address and no default route: a packet
from it reaches the bridge's other namespaces or the bridge's own address in the machine's
namespace (where a test may serve something, an HTTP proxy or an SMTP sink), never the outside.
Names carry the test run's pid (another run may have its own network at the same time).
`hosts_file` writes what DNS would answer; `ip netns exec` reads it from
/etc/netns/<namespace>/hosts, the convention of iproute2. `close` removes everything, and is
safe to call on a network half made.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

NETNS_ETC = Path("/etc/netns")
SUBNET_TRIES = 50
PROXY_START_TIMEOUT = 15


def ip(*arguments: str, namespace: str | None = None) -> str:
    prefix = ["ip", "-n", namespace] if namespace else ["ip"]
    return subprocess.run(
        [*prefix, *arguments], check=True, capture_output=True, text=True, timeout=30
    ).stdout


def _used_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the machine routes or has an address in."""
    used = []
    for route in json.loads(ip("-j", "-4", "route", "show", "table", "all")):
        destination = route.get("dst", "")
        if destination and destination != "default" and destination[0].isdigit():
            used.append(ipaddress.ip_network(destination, strict=False))
    for link in json.loads(ip("-j", "-4", "address")):
        for address in link.get("addr_info", []):
            used.append(ipaddress.ip_network(f"{address['local']}/{address['prefixlen']}", False))
    return used


def free_subnet() -> ipaddress.IPv4Network:
    """A 10.x.y.0/24 that overlaps nothing the machine routes (another run's bridge included)."""
    used = _used_networks()
    chooser = random.Random(os.getpid())
    for _ in range(SUBNET_TRIES):
        candidate = ipaddress.ip_network(
            f"10.{chooser.randrange(1, 255)}.{chooser.randrange(0, 256)}.0/24"
        )
        if not any(candidate.overlaps(network) for network in used):
            return candidate
    raise RuntimeError(f"no free 10.x.y.0/24 in {SUBNET_TRIES} tries (routes: {used})")


@dataclass
class Network:
    """A bridge in the machine's namespace and the namespaces plugged into it."""

    tag: str  # short and unique per run: it names the bridge, veths and namespaces
    subnet: ipaddress.IPv4Network
    namespaces: dict[str, str] = field(default_factory=dict)  # namespace -> its address
    _links: list[str] = field(default_factory=list)

    @classmethod
    def create(cls) -> Network:
        network = cls(tag=f"{os.getpid() % 0xFFFFF:05x}", subnet=free_subnet())
        try:
            ip("link", "add", network.bridge, "type", "bridge")
            network._links.append(network.bridge)
            ip("address", "add", f"{network.bridge_address}/24", "dev", network.bridge)
            ip("link", "set", network.bridge, "up")
        except BaseException:
            network.close()
            raise
        return network

    @property
    def bridge(self) -> str:
        return f"apbr{self.tag}"

    @property
    def bridge_address(self) -> str:
        """The machine's own address on the bridge (its first host address)."""
        return str(self.subnet.network_address + 1)

    def add_namespace(self, role: str) -> tuple[str, str]:
        """A namespace `role` (one letter or a short word) on the bridge: (its name, address)."""
        name = f"appliance-{self.tag}-{role}"
        address = str(self.subnet.network_address + 2 + len(self.namespaces))
        outside = f"apv{self.tag}{role[:3]}"[:15]
        ip("netns", "add", name)
        self.namespaces[name] = address
        ip("link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", name)
        self._links.append(outside)
        ip("link", "set", outside, "master", self.bridge, "up")
        ip("address", "add", f"{address}/24", "dev", "eth0", namespace=name)
        ip("link", "set", "eth0", "up", namespace=name)
        ip("link", "set", "lo", "up", namespace=name)
        return name, address

    def hosts_file(self, namespace: str, entries: dict[str, str]) -> None:
        """/etc/hosts as `ip netns exec namespace` shows it: name -> address, and localhost."""
        directory = NETNS_ETC / namespace
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "hosts").write_text(hosts_text(entries))

    def close(self) -> None:
        for name in self.namespaces:
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=30)
            shutil.rmtree(NETNS_ETC / name, ignore_errors=True)
        for link in reversed(self._links):  # a veth goes with its namespace, the bridge last
            subprocess.run(["ip", "link", "delete", link], capture_output=True, timeout=30)
        self.namespaces.clear()
        self._links.clear()


def hosts_text(entries: dict[str, str]) -> str:
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    return "\n".join([*lines, *(f"{address}\t{name}" for name, address in entries.items())]) + "\n"


# --- the way out: an HTTP proxy on the bridge --------------------------------------------------
@dataclass
class HttpProxy:
    """tinyproxy from Debian, in the machine's namespace, listening on the bridge's address
    only, serving only the bridge's subnet and only the hosts it is given."""

    url: str
    process: subprocess.Popen

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_http_proxy(network: Network, directory: Path, hosts: list[str], port: int) -> HttpProxy:
    """The proxy the namespaces reach `hosts` (exact names) through, e.g. the Debian mirror."""
    if not shutil.which("tinyproxy"):
        raise RuntimeError("tinyproxy is missing: apt-get install tinyproxy")
    directory.mkdir(parents=True, exist_ok=True)
    allowed = directory / "tinyproxy-hosts"
    allowed.write_text("".join(f"^{re.escape(host)}$\n" for host in hosts))
    config = directory / "tinyproxy.conf"
    config.write_text(
        "User nobody\nGroup nogroup\n"
        f"Port {port}\nListen {network.bridge_address}\nAllow {network.subnet}\n"
        # apt over HTTP, pip over HTTPS (CONNECT); nothing but the listed hosts.
        f'ConnectPort 443\nFilter "{allowed}"\nFilterType ere\nFilterDefaultDeny Yes\n'
        "Timeout 600\nMaxClients 100\nLogLevel Notice\n"
    )
    process = subprocess.Popen(
        ["tinyproxy", "-d", "-c", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=(directory / "tinyproxy.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    proxy = HttpProxy(f"http://{network.bridge_address}:{port}", process)
    deadline = time.monotonic() + PROXY_START_TIMEOUT
    while True:
        try:
            socket.create_connection((network.bridge_address, port), timeout=1).close()
            return proxy
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                proxy.stop()
                log = (directory / "tinyproxy.log").read_text()[-2000:]
                raise RuntimeError(f"tinyproxy did not start: {log}") from None
            time.sleep(0.1)
