# SPDX-License-Identifier: AGPL-3.0-or-later
"""Creating a room, inviting, joining and sending with the appliance module, against without.

Two Synapses start side by side from the same rendered configuration (bench_registration's
pair: one has its ``modules:`` section removed).  On each, agent A creates a private room the
way Element does (``private_chat`` with ``m.room.encryption`` in its initial state), invites
agent B, B joins, and each sends a message.  The servers take turns step by step (which goes
first alternates), so that load on the machine hits both alike.

Two ratios, both from this run:

* wall time seen by the client: the ratio of the medians of whole rounds (and of each step);
  this is the goal's figure, and on a shared machine it moves with the load;
* Synapse's own CPU time for the same requests (``ru=`` in its request log, user + system):
  what the module costs the server, which the machine's load barely moves.

Run: .venv/bin/python bench/bench_rooms.py [rounds per server, default 60]

``forum`` mode measures one message in a big forum instead: the creator of a forum with
301 members (300 joined through the Admin API) sends messages on both servers in turns.  Once
a module registers ``check_event_allowed``, Synapse loads the room's whole state for every
event before calling it (the module returns at once for messages), so this is where that cost
shows:

    .venv/bin/python bench/bench_rooms.py forum [members, default 301] [messages, default 200]
"""

from __future__ import annotations

import re
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from bench_registration import DOMAIN, start, without_module  # noqa: E402
from bench_result import at_most, emit, no_goal  # noqa: E402
from matrix_helpers import MatrixClient, Person, SideSynapse, wait_for_allowlist  # noqa: E402
from requests import Session  # noqa: E402

GOAL = 1.10
STEPS = ("create", "invite", "join", "send")
# What Element sends for a new private room.
ENCRYPTED = [
    {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}
]
# A line of Synapse's request log:
# "... ru=(0.049sec, 0.001sec) ... "POST /_matrix/client/v3/createRoom ..."
REQUEST_LOG = re.compile(
    r"ru=\(([\d.]+)sec, ([\d.]+)sec\).*\"(?:POST|PUT) /_matrix/client/v3/"
    r"(?P<path>createRoom|rooms/[^/ ]+/invite|join/|rooms/[^/ ]+/send/)"
)
STEP_OF_PATH = (
    ("createRoom", "create"),
    ("/invite", "invite"),
    ("join/", "join"),
    ("/send/", "send"),
)


def agent(client: MatrixClient, name: str) -> Person:
    # The username is what the server without the module uses; the module derives its own.
    account = client.register_account(f"{name}@{DOMAIN}", username=name)
    return Person(client, account.user_id, account.access_token)


def timed(action: Callable[[], object]) -> float:
    began = time.perf_counter()
    action()
    return time.perf_counter() - began


def ok(response) -> None:
    assert response.status_code == 200, response.text


def round_steps(a: Person, b: Person, index: int) -> Iterator[tuple[str, Callable[[], object]]]:
    """The steps of one round, each to be timed on its own."""
    room: list[str] = []
    yield (
        "create",
        lambda: room.append(
            a.new_room(name=f"Bench {index}", preset="private_chat", initial_state=ENCRYPTED)
        ),
    )
    yield "invite", lambda: ok(a.invite(room[0], b.user_id))
    yield "join", lambda: ok(b.join(room[0]))
    yield "send", lambda: (ok(a.send_text(room[0], "Bonjour")), ok(b.send_text(room[0], "Salut")))


def rounds_side_by_side(people: dict[str, tuple[Person, Person]], index: int) -> dict:
    """One round on every server, step by step in turns (who goes first alternates), so that
    a burst of load on the machine hits the same step on both."""
    steps = {name: round_steps(*pair, index) for name, pair in people.items()}
    timings: dict[str, dict[str, float]] = {name: {} for name in people}
    for position, step in enumerate(STEPS):
        names = list(people) if (index + position) % 2 == 0 else list(reversed(people))
        for name in names:
            label, action = next(steps[name])
            assert label == step
            timings[name][step] = timed(action)
    return timings


def server_cpu(log: Path, offset: int) -> dict[str, float]:
    """Synapse's CPU seconds per step, summed over the requests logged after ``offset``."""
    totals = dict.fromkeys(STEPS, 0.0)
    with log.open(encoding="utf-8", errors="replace") as lines:
        lines.seek(offset)
        for line in lines:
            found = REQUEST_LOG.search(line)
            if found:
                step = next(step for marker, step in STEP_OF_PATH if marker in found["path"])
                totals[step] += float(found[1]) + float(found[2])
    return totals


def print_row(label: str, with_module: float, without: float) -> None:
    print(f"  {label:<8} {with_module:12.1f} {without:10.1f} {with_module / without:7.2f}")


def report_wall(timings: dict[str, list[dict[str, float]]], rounds: int) -> float:
    print(f"client wall time, median of {rounds} rounds per server (ms):")
    print(f"  {'step':<8} {'with module':>12} {'without':>10} {'ratio':>7}")
    medians = {}
    for step in (*STEPS, "total"):
        for name, rows in timings.items():
            values = [sum(row.values()) if step == "total" else row[step] for row in rows]
            medians[name, step] = statistics.median(values) * 1000
        print_row(step, medians["with module", step], medians["without module", step])
    return medians["with module", "total"] / medians["without module", "total"]


def report_cpu(cpu: dict[str, dict[str, float]], rounds: int) -> float:
    print(f"Synapse CPU time per round, mean of {rounds} rounds (ms):")
    for step in (*STEPS, "total"):
        values = [sum(c.values()) if step == "total" else c[step] for c in cpu.values()]
        print_row(step, values[0] * 1000 / rounds, values[1] * 1000 / rounds)
    return sum(cpu["with module"].values()) / sum(cpu["without module"].values())


def measure(servers: dict[str, SideSynapse], rounds: int) -> tuple[dict, dict]:
    wait_for_allowlist(servers["with module"].client())
    people = {
        name: (agent(server.client(), "anne"), agent(server.client(), "bert"))
        for name, server in servers.items()
    }
    for index in range(3):  # warm-up, not counted
        rounds_side_by_side(people, index)
    logs = {name: server.layout.logfile("synapse") for name, server in servers.items()}
    offsets = {name: log.stat().st_size for name, log in logs.items()}
    timings: dict[str, list[dict[str, float]]] = {name: [] for name in people}
    for index in range(rounds):
        for name, row in rounds_side_by_side(people, index).items():
            timings[name].append(row)
    return timings, {name: server_cpu(logs[name], offsets[name]) for name in servers}


def crowded_forum(server: SideSynapse, creator: Person, members: int) -> str:
    """A forum of creator and members - 1 agents, who join through the Admin API (quicker than
    registering each by email; the module's rules apply to their joins all the same)."""
    room = creator.new_room(name="Forum", preset="public_chat")
    admin = Session()
    admin.headers["Authorization"] = f"Bearer {server.admin_token()}"
    for n in range(members - 1):
        user_id = f"@member{n}:{server.settings.server_name}"
        created = admin.put(
            f"{server.url}/_synapse/admin/v2/users/{user_id}",
            json={"password": secrets.token_urlsafe(16), "displayname": f"Member {n} [{DOMAIN}]"},
            timeout=30,
        )
        assert created.status_code in (200, 201), created.text
        joined = admin.post(
            f"{server.url}/_synapse/admin/v1/join/{room}", json={"user_id": user_id}, timeout=30
        )
        assert joined.status_code == 200, joined.text
    return room


def measure_forum(
    servers: dict[str, SideSynapse], members: int, messages: int
) -> tuple[dict[str, list[float]], dict[str, float]]:
    wait_for_allowlist(servers["with module"].client())
    senders = {name: agent(server.client(), "anne") for name, server in servers.items()}
    rooms = {name: crowded_forum(servers[name], senders[name], members) for name in servers}
    logs = {name: server.layout.logfile("synapse") for name, server in servers.items()}
    offsets = {name: log.stat().st_size for name, log in logs.items()}
    timings: dict[str, list[float]] = {name: [] for name in servers}
    for index in range(messages):
        names = list(servers) if index % 2 == 0 else list(reversed(servers))
        for name in names:
            sender, room = senders[name], rooms[name]
            text = f"Message {index}"
            timings[name].append(timed(lambda s=sender, r=room, t=text: ok(s.send_text(r, t))))
    cpu = {name: server_cpu(logs[name], offsets[name])["send"] for name in servers}
    return timings, cpu


def forum_main(members: int, messages: int) -> int:
    with tempfile.TemporaryDirectory() as temp:
        with (
            start(Path(temp, "with")) as with_module,
            start(Path(temp, "without"), without_module) as bare,
        ):
            servers = {"with module": with_module, "without module": bare}
            timings, cpu = measure_forum(servers, members, messages)
    print(f"one message in a forum of {members} members, {messages} messages per server (ms):")
    print(f"  {'':<8} {'with module':>12} {'without':>10} {'ratio':>7}")
    wall = [statistics.median(timings[name]) * 1000 for name in servers]
    print_row("wall", *wall)
    server = [cpu[name] * 1000 / messages for name in servers]
    print_row("CPU", *server)
    print(
        f"ratio with/without module per message: wall {wall[0] / wall[1]:.2f}x (median), "
        f"Synapse CPU {server[0] / server[1]:.2f}x (mean)"
    )
    return 0


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "forum":
        members = int(sys.argv[2]) if len(sys.argv) > 2 else 301
        return forum_main(members, int(sys.argv[3]) if len(sys.argv) > 3 else 200)
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    with tempfile.TemporaryDirectory() as temp:
        with (
            start(Path(temp, "with")) as with_module,
            start(Path(temp, "without"), without_module) as bare,
        ):
            timings, cpu = measure({"with module": with_module, "without module": bare}, rounds)
    print("create a private room, invite, join, one message each")
    wall = report_wall(timings, rounds)
    server = report_cpu(cpu, rounds)
    verdict = "met" if wall <= GOAL else "NOT met"
    print(f"ratio with/without module, wall time = {wall:.2f}x (goal <= {GOAL:.2f}: {verdict})")
    print(f"ratio with/without module, Synapse CPU time = {server:.2f}x")
    with_ms, without_ms = (
        statistics.median(sum(row.values()) for row in timings[name]) * 1000 for name in timings
    )
    what = "create, invite, join, send: with / without module"
    emit(
        "rooms",
        [
            at_most(f"{what}, wall", f"{with_ms:.0f} ms against {without_ms:.0f} ms", wall, GOAL),
            no_goal(f"{what}, Synapse CPU", "", server),
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
