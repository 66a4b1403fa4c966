# SPDX-License-Identifier: AGPL-3.0-or-later
"""Federation with the appliance module, against two bare Synapse servers federating the same
way, in the same run.

Four Synapse servers start on loopback, rendered by the same code as the tests' network
(``tests/federation_fixtures.py``: TLS from a CA made here, IP-literal server names, closed
federation listing the peers, the tests' short back-off and wide rate limits):

* ``A`` and ``B``, with the module, peers of each other (role ``agents``);
* ``A0`` and ``B0``, the same configuration with the ``modules:`` section removed, peers of
  each other; ``A0`` is also a peer of ``B`` (and ``B`` of ``A0``), the common sender of the
  incoming-traffic measure.

Two measures, rounds alternated so that load on the machine hits both alike:

1. **Delivery latency across servers**: an agent of A sends a message into a private room
   shared with an agent of B; the time from the send to the message in the recipient's
   ``/sync`` on B (p50, p95), against the same from A0 to B0.  Also, for reference, between
   two agents of A (one server): the price of federation itself.  Goal: with the module at
   most 1.1x the bare pair (p50).
2. **Incoming federation events**: bursts of messages sent on A0 into a room with a member on
   B, and into a room with a member on B0, in turns; the receiving Synapse's own CPU time for
   ``PUT /_matrix/federation/v1/send`` (``ru=`` in its request log) per event gives events per
   CPU-second received, with the module (B) against without (B0).  Goal: at least 0.9.  The
   wall-clock rate (first send to last arrival) is printed too: the sender bounds it.

Run: .venv/bin/python bench/bench_federation.py [messages per pair, default 100]
     [bursts, default 10] [events per burst, default 20]
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from bench_registration import without_module  # noqa: E402
from bench_result import at_least, at_most, emit, no_goal  # noqa: E402
from federation_fixtures import (  # noqa: E402
    CertificateAuthority,
    Plan,
    free_port_on,
    join_when_invited,
    loosen_for_tests,
    member_settings,
)
from harness import free_port  # noqa: E402
from matrix_helpers import Person, SideSynapse, wait_for_allowlist  # noqa: E402

from appliance.config.layout import Layout  # noqa: E402

LATENCY_GOAL = 1.10
INCOMING_GOAL = 0.90
SYNC_TIMEOUT_MS = 10_000
DELIVERY_TIMEOUT = 60.0  # seconds a message may take before the run stops
# "... ru=(0.012sec, 0.001sec) ... "PUT /_matrix/federation/v1/send/<txn> ..."
SEND_LOG = re.compile(r"ru=\(([\d.]+)sec, ([\d.]+)sec\).*\"PUT /_matrix/federation/v1/send/")
_FILTERS = itertools.count(1)


def bare(config: dict) -> None:
    loosen_for_tests(config)
    without_module(config)


def plans() -> dict[str, Plan]:
    specs = {
        "A": ("127.0.0.12", "ac-paris.fr"),
        "B": ("127.0.0.13", "ac-lyon.fr"),
        "A0": ("127.0.0.14", "ac-paris.fr"),
        "B0": ("127.0.0.15", "ac-lyon.fr"),
    }
    return {
        key: Plan(key, address, "agents", (domain,), free_port_on(address), free_port())
        for key, (address, domain) in specs.items()
    }


PEERS = {"A": ("B",), "B": ("A", "A0"), "A0": ("B0", "B"), "B0": ("A0",)}


@contextlib.contextmanager
def network(directory: Path) -> Iterator[dict[str, SideSynapse]]:
    ca = CertificateAuthority.create(directory)
    planned = plans()
    with contextlib.ExitStack() as stack:
        servers = {}
        for key, plan in planned.items():
            state_dir = directory / key
            state_dir.mkdir()
            peers = [planned[name] for name in PEERS[key]]
            settings = member_settings(plan, peers, state_dir, ca, free_port())
            edit = loosen_for_tests if key in ("A", "B") else bare
            side = SideSynapse(
                settings, Layout.from_settings(settings, state_dir), edit_config=edit
            )
            servers[key] = stack.enter_context(side)
        wait_for_allowlist(servers["A"].client())
        wait_for_allowlist(servers["B"].client())
        yield servers


def agent(server: SideSynapse, name: str, domain: str) -> Person:
    # The username is what the servers without the module use; the module derives its own.
    account = server.client().register_account(f"{name}@{domain}", username=name)
    return Person(server.client(), account.user_id, account.access_token)


class Inbox:
    """A person's /sync, followed from where it was: waits for given events to arrive."""

    def __init__(self, person: Person) -> None:
        self.person = person
        self.since = self._sync(None, 0)[0]

    def _sync(self, since: str | None, timeout_ms: int) -> tuple[str, set[str]]:
        fresh = {"room": {"timeline": {"limit": 100}}, "account_data": {"limit": next(_FILTERS)}}
        params = {"timeout": timeout_ms, "filter": json.dumps(fresh)}
        if since:
            params["since"] = since
        response = self.person.call("GET", "/_matrix/client/v3/sync", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        seen = {
            event["event_id"]
            for room in body.get("rooms", {}).get("join", {}).values()
            for event in room.get("timeline", {}).get("events", [])
        }
        return body["next_batch"], seen

    def wait_for(self, event_ids: set[str]) -> None:
        missing = set(event_ids)
        deadline = time.monotonic() + DELIVERY_TIMEOUT
        while missing:
            if time.monotonic() > deadline:
                raise SystemExit(f"{len(missing)} events never reached {self.person.user_id}")
            self.since, seen = self._sync(self.since, SYNC_TIMEOUT_MS)
            missing -= seen


class Pair:
    """A sender and a recipient in one private room, the recipient's /sync followed."""

    def __init__(self, sender: Person, recipient: Person) -> None:
        self.sender = sender
        room = sender.new_room(preset="private_chat", name="Bench")
        response = sender.invite(room, recipient.user_id)
        assert response.status_code == 200, response.text
        if recipient.user_id.split(":", 1)[1] == sender.user_id.split(":", 1)[1]:
            joined = recipient.join(room)
        else:
            joined = join_when_invited(recipient, room)
        assert joined.status_code == 200, joined.text
        self.room = room
        self.inbox = Inbox(recipient)

    def send(self, text: str) -> str:
        response = self.sender.send_text(self.room, text)
        assert response.status_code == 200, response.text
        return response.json()["event_id"]

    def delivery(self, text: str) -> float:
        began = time.perf_counter()
        self.inbox.wait_for({self.send(text)})
        return time.perf_counter() - began

    def burst(self, count: int, label: str) -> float:
        """Send count messages as fast as the client can, then wait for all: wall seconds."""
        began = time.perf_counter()
        sent = {self.send(f"{label} {n}") for n in range(count)}
        self.inbox.wait_for(sent)
        return time.perf_counter() - began


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def send_cpu(log: Path, offset: int) -> float:
    """CPU seconds the server spent answering federation /send after ``offset``."""
    total = 0.0
    with log.open(encoding="utf-8", errors="replace") as lines:
        lines.seek(offset)
        for line in lines:
            if found := SEND_LOG.search(line):
                total += float(found[1]) + float(found[2])
    return total


def measure_latency(pairs: dict[str, Pair], messages: int) -> dict[str, list[float]]:
    for index in range(3):  # warm-up, not counted
        for pair in pairs.values():
            pair.delivery(f"warm-up {index}")
    latencies: dict[str, list[float]] = {name: [] for name in pairs}
    names = list(pairs)
    for index in range(messages):
        order = names[index % len(names) :] + names[: index % len(names)]  # who goes first turns
        for name in order:
            latencies[name].append(pairs[name].delivery(f"message {index}"))
    return latencies


def measure_incoming(
    pairs: dict[str, Pair], servers: dict[str, SideSynapse], bursts: int, size: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Per receiver (B, B0): wall seconds and /send CPU seconds over every burst."""
    for pair in pairs.values():
        pair.burst(size, "warm-up")
    logs = {name: servers[name].layout.logfile("synapse") for name in pairs}
    offsets = {name: log.stat().st_size for name, log in logs.items()}
    wall = dict.fromkeys(pairs, 0.0)
    names = list(pairs)
    for index in range(bursts):
        for name in names if index % 2 == 0 else reversed(names):
            wall[name] += pairs[name].burst(size, f"burst {index}")
    return wall, {name: send_cpu(logs[name], offsets[name]) for name in pairs}


def main() -> int:
    messages = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    bursts = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    with tempfile.TemporaryDirectory() as temp, network(Path(temp)) as servers:
        started = time.perf_counter()
        paris, lyon = "ac-paris.fr", "ac-lyon.fr"
        anne, bert = agent(servers["A"], "anne", paris), agent(servers["B"], "bert", lyon)
        anne0, bert0 = agent(servers["A0"], "anne", paris), agent(servers["B0"], "bert", lyon)
        carl = agent(servers["A"], "carl", paris)
        bert_from_bare = agent(servers["B"], "berthe", lyon)
        bert0_too = agent(servers["B0"], "berthe", lyon)
        latency_pairs = {
            "appliance A -> B": Pair(anne, bert),
            "bare A0 -> B0": Pair(anne0, bert0),
            "appliance, one server": Pair(anne, carl),
        }
        latencies = measure_latency(latency_pairs, messages)
        incoming_pairs = {"B": Pair(anne0, bert_from_bare), "B0": Pair(anne0, bert0_too)}
        wall, cpu = measure_incoming(incoming_pairs, servers, bursts, size)
        print(f"(measured in {time.perf_counter() - started:.0f} s)")

    print(f"delivery from a send to the recipient's /sync, {messages} messages each (ms):")
    print(f"  {'':<24} {'p50':>7} {'p95':>7}")
    figures = {}
    for name, values in latencies.items():
        p50, p95 = percentile(values, 0.5) * 1000, percentile(values, 0.95) * 1000
        figures[name] = (p50, p95)
        print(f"  {name:<24} {p50:7.1f} {p95:7.1f}")
    (p50, p95), (bare50, bare95) = figures["appliance A -> B"], figures["bare A0 -> B0"]
    one50 = figures["appliance, one server"][0]
    latency_ratio, tail_ratio = p50 / bare50, p95 / bare95
    print(
        f"ratio appliance / bare across servers: p50 {latency_ratio:.2f}x, p95 {tail_ratio:.2f}x "
        f"(goal p50 <= {LATENCY_GOAL:.2f}); across servers / one server: {p50 / one50:.2f}x"
    )
    events = bursts * size
    rates = {name: events / cpu[name] if cpu[name] else float("inf") for name in cpu}
    wall_rates = {name: events / wall[name] for name in wall}
    print(f"incoming federation, {bursts} bursts of {size} messages sent on A0 to each receiver:")
    for name in ("B", "B0"):
        print(
            f"  {name:<3} {'with' if name == 'B' else 'without'} module: "
            f"{rates[name]:8.0f} events per /send CPU-second, "
            f"{wall_rates[name]:6.1f} events/s end to end"
        )
    incoming_ratio = rates["B"] / rates["B0"]
    print(
        f"ratio with / without module, events per CPU-second = {incoming_ratio:.2f}x "
        f"(goal >= {INCOMING_GOAL:.2f}); end to end {wall_rates['B'] / wall_rates['B0']:.2f}x"
    )
    emit(
        "federation",
        [
            at_most(
                "delivery across servers p50: appliance / two bare Synapses",
                f"{p50:.0f} ms against {bare50:.0f} ms (p95 {p95:.0f} against {bare95:.0f})",
                latency_ratio,
                LATENCY_GOAL,
            ),
            no_goal("delivery p95: appliance / bare", "", tail_ratio),
            no_goal(
                "delivery p50: across servers / one server (appliance)",
                f"{p50:.0f} ms against {one50:.0f} ms",
                p50 / one50,
            ),
            at_least(
                "incoming federation events per CPU-second, with / without module",
                f"{rates['B']:.0f} against {rates['B0']:.0f} events/s",
                incoming_ratio,
                INCOMING_GOAL,
            ),
            no_goal(
                "incoming events/s end to end (sender-bound), with / without",
                f"{wall_rates['B']:.1f} against {wall_rates['B0']:.1f} events/s",
                wall_rates["B"] / wall_rates["B0"],
            ),
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
