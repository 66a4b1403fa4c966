# SPDX-License-Identifier: AGPL-3.0-or-later
"""Load held, measured: many agents and clients at once on a fresh evaluation appliance.

Started by the same code as `make up`, on free loopback ports in a temporary directory:
1. `--agents` agents register through the real mail flow (requestToken, the link from the SMTP
   sink, /register), `--workers` at a time;
2. rooms of each kind (private, open to externals, forum, direct chat), every agent in some;
3. `--messages` messages sent by the agents, `--clients` at once, each into a room of theirs.
   A client does what Matrix clients do: it retries a send that failed without an answer
   (connection refused, 502/503/504, a 5xx or 429) with the same transaction ID, so a message
   is never doubled, for up to `--retry-seconds`.
With `--kill SERVICE`, that service is killed (SIGKILL) once a third of the messages are sent,
and `appliance up` (EvaluationAppliance.up, what `make up` runs) starts it again.
At the end, every room is read back: each acknowledged message (a 200 with its event ID) must
be there. The report: counts, errors by status and errcode, retries, p50/p95 per step,
messages per second, and acknowledged messages lost. Exit status 1 on any error or loss.

Run: .venv/bin/python bench/load.py --agents 200 --messages 2000 [--kill synapse]
"""

from __future__ import annotations

import argparse
import contextlib
import email
import os
import secrets
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psutil
import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from harness import evaluation_settings  # noqa: E402  (the test harness's free-port settings)
from matrix_helpers import MatrixClient  # noqa: E402

from appliance.config.layout import Layout  # noqa: E402
from appliance.evaluation.lifecycle import EvaluationAppliance  # noqa: E402
from appliance.evaluation.supervisor import running_process  # noqa: E402
from appliance.synapse_module.rooms.kinds import ACCESS_RULES  # noqa: E402

DOMAIN = "ac-paris.fr"
ROOM_SIZE = 10
TIMEOUT = 60
RETRIED = {429, 500, 502, 503, 504}
KINDS = ("private", "externals", "forum", "direct")


@dataclass
class Step:
    """One step's figures: latencies of the calls that succeeded, errors, retries."""

    name: str
    latencies: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    retries: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ok(self, seconds: float) -> None:
        with self.lock:
            self.latencies.append(seconds)

    def error(self, key: str) -> None:
        with self.lock:
            self.errors[key] += 1

    def retry(self, key: str) -> None:
        with self.lock:
            self.retries[key] += 1

    def report(self) -> str:
        count = len(self.latencies)
        line = f"{self.name:9} {count:5} ok, {sum(self.errors.values())} errors"
        if count:
            ordered = sorted(self.latencies)
            p95 = ordered[min(count - 1, int(count * 0.95))]
            line += (
                f", p50 {statistics.median(ordered) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms,"
                f" {count / self.seconds:.1f}/s over {self.seconds:.1f} s"
            )
        if self.errors:
            line += "\n          errors: " + ", ".join(f"{k} x{v}" for k, v in self.errors.items())
        if self.retries:
            line += "\n          retried: " + ", ".join(
                f"{k} x{v}" for k, v in self.retries.items()
            )
        return line


def outcome(response: requests.Response) -> str:
    """`status errcode` of a refusal, as the report groups them."""
    try:
        errcode = response.json().get("errcode", "-")
    except ValueError:
        errcode = "not JSON"
    return f"{response.status_code} {errcode}"


class MailIndex:
    """The sink's Maildir, each message parsed once and shared by every registering thread
    (MatrixClient re-reads the whole Maildir at each poll: with 200 mails and 8 threads that
    would cost the load generator more CPU than the appliance)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.by_name: dict[str, email.message.Message] = {}
        self.lock = threading.Lock()

    def to(self, address: str) -> list[email.message.Message]:
        with self.lock:
            for folder in ("new", "cur"):
                for entry in os.scandir(self.directory / folder):
                    if entry.name not in self.by_name:
                        with open(entry.path, "rb") as file:
                            self.by_name[entry.name] = email.message_from_binary_file(file)
            return [m for m in self.by_name.values() if address.lower() in (m["To"] or "").lower()]


class LoadClient(MatrixClient):
    def __init__(self, base_url: str, mails: MailIndex):
        super().__init__(base_url, mails.directory)
        self.mails = mails

    def mails_to(self, address: str) -> list[email.message.Message]:
        return self.mails.to(address)


@dataclass
class Agent:
    user_id: str
    token: str


def register(client: MatrixClient, address: str, step: Step) -> Agent | None:
    began = time.monotonic()
    try:
        account = client.register_account(address)
    except (AssertionError, requests.RequestException) as error:
        step.error(type(error).__name__ + ": " + str(error).splitlines()[0][:80])
        return None
    step.ok(time.monotonic() - began)
    return Agent(account.user_id, account.access_token)


def call(
    http: requests.Session,
    base: str,
    method: str,
    path: str,
    agent: Agent,
    body: dict | None,
    step: Step,
    retry_seconds: float,
) -> requests.Response | None:
    """One client call with the retries a Matrix client makes; None if it never succeeded."""
    began = time.monotonic()
    deadline = began + retry_seconds
    headers = {"Authorization": f"Bearer {agent.token}"}
    for _ in range(10_000):  # bounded by the deadline long before this
        try:
            response = http.request(
                method, base + path, json=body, headers=headers, timeout=TIMEOUT
            )
        except requests.RequestException as error:
            key = type(error).__name__
        else:
            if response.status_code == 200:
                step.ok(time.monotonic() - began)
                return response
            key = outcome(response)
            if response.status_code not in RETRIED:
                step.error(key)
                return None
        if time.monotonic() > deadline:
            step.error(f"{key} (gave up after {retry_seconds:.0f} s)")
            return None
        step.retry(key)
        time.sleep(0.5)
    step.error("too many retries")
    return None


def room_body(kind: str, members: list[Agent]) -> dict:
    if kind == "forum":
        return {"preset": "public_chat", "name": f"Forum {secrets.token_hex(3)}"}
    if kind == "direct":
        return {"is_direct": True, "preset": "trusted_private_chat", "invite": [members[1].user_id]}
    rule = "restricted" if kind == "private" else "unrestricted"
    access = {"type": ACCESS_RULES, "state_key": "", "content": {"rule": rule}}
    return {
        "preset": "private_chat",
        "initial_state": [access],
        "invite": [m.user_id for m in members[1:]],
    }


def make_rooms(base: str, agents: list[Agent], step: Step, retry: float) -> list[tuple]:
    """Rooms of each kind, in turn; every agent is in at least one. (room_id, members)."""
    http = requests.Session()
    rooms = []
    began = time.monotonic()
    groups = [agents[i : i + ROOM_SIZE] for i in range(0, len(agents), ROOM_SIZE)]
    for index, group in enumerate(groups):
        kind = KINDS[index % len(KINDS)]
        members = group[:2] if kind == "direct" else group
        if len(members) < 2:
            continue
        created = call(
            http, base, "POST", "/_matrix/client/v3/createRoom", members[0],
            room_body(kind, members), step, retry,
        )  # fmt: skip
        if created is None:
            continue
        room_id = created.json()["room_id"]
        for member in members[1:]:
            call(
                http, base, "POST", f"/_matrix/client/v3/join/{quote(room_id)}", member, {},
                step, retry,
            )  # fmt: skip
        rooms.append((room_id, members, kind))
        if kind == "direct":  # the rest of the group still needs a room: a private one
            rest = group[2:]
            if len(rest) >= 2:
                again = call(
                    http, base, "POST", "/_matrix/client/v3/createRoom", rest[0],
                    room_body("private", rest), step, retry,
                )  # fmt: skip
                if again is not None:
                    other = again.json()["room_id"]
                    for member in rest[1:]:
                        call(
                            http, base, "POST", f"/_matrix/client/v3/join/{quote(other)}",
                            member, {}, step, retry,
                        )  # fmt: skip
                    rooms.append((other, rest, "private"))
    step.seconds = time.monotonic() - began
    return rooms


def send_messages(
    base: str,
    rooms: list[tuple],
    count: int,
    clients: int,
    step: Step,
    retry: float,
    on_third=None,
) -> dict[str, set[str]]:
    """`count` messages, `clients` at once; the event IDs acknowledged, by room."""
    acknowledged: dict[str, set[str]] = {room_id: set() for room_id, _, _ in rooms}
    lock = threading.Lock()
    local = threading.local()
    sent: Counter = Counter()
    repairing: list[threading.Thread] = []

    def one(number: int) -> None:
        if not hasattr(local, "http"):
            local.http = requests.Session()
        room_id, members, _ = rooms[number % len(rooms)]
        sender = members[(number // len(rooms)) % len(members)]
        txn = f"load-{number}-{secrets.token_hex(4)}"
        path = f"/_matrix/client/v3/rooms/{quote(room_id)}/send/m.room.message/{txn}"
        body = {"msgtype": "m.text", "body": f"message {number}"}
        response = call(local.http, base, "PUT", path, sender, body, step, retry)
        with lock:
            if response is not None:
                acknowledged[room_id].add(response.json()["event_id"])
            sent["done"] += 1
            if on_third and sent["done"] == max(1, count // 3):
                repairing.append(threading.Thread(target=on_third, daemon=True))
                repairing[-1].start()

    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(one, range(count)))
    step.seconds = time.monotonic() - began
    for thread in repairing:  # the repair is over before anything is read back
        thread.join(timeout=600)
    return acknowledged


def lost_messages(base: str, rooms: list[tuple], acknowledged: dict[str, set[str]]) -> int:
    """Acknowledged event IDs missing when each room is read back from the start."""
    http, lost = requests.Session(), 0
    for room_id, members, _ in rooms:
        seen, token = set(), None
        headers = {"Authorization": f"Bearer {members[0].token}"}
        for _ in range(10_000):  # pages of 500; bounded
            params = {"dir": "f", "limit": 500, **({"from": token} if token else {})}
            path = f"{base}/_matrix/client/v3/rooms/{quote(room_id)}/messages"
            page = http.get(path, params=params, headers=headers, timeout=TIMEOUT).json()
            seen |= {event["event_id"] for event in page.get("chunk", [])}
            token = page.get("end")
            if not page.get("chunk") or not token:
                break
        lost += len(acknowledged[room_id] - seen)
    return lost


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=20, help="messages sent at once")
    parser.add_argument("--workers", type=int, default=8, help="registrations at once")
    parser.add_argument("--kill", choices=["synapse", "clamd", "content-scanner", "console"])
    parser.add_argument("--retry-seconds", type=float, default=120.0)
    args = parser.parse_args()
    if not 1 <= args.agents <= 1000 or not 1 <= args.messages <= 100_000:
        parser.error("--agents 1-1000, --messages 1-100000")
    with tempfile.TemporaryDirectory(prefix="appliance-load-") as directory:
        state_dir = Path(directory)
        settings = evaluation_settings(state_dir, registration={"allowed_domains": [DOMAIN]})
        appliance = EvaluationAppliance(settings, Layout.from_settings(settings, state_dir))
        print(f"load: {args.agents} agents, {args.messages} messages, {args.clients} clients")
        print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the start")
        appliance.up()
        try:
            return run(appliance, args)
        finally:
            appliance.down()


def run(appliance: EvaluationAppliance, args) -> int:
    base = appliance.settings.synapse.listen.url
    mails = MailIndex(appliance.layout.mail_dir)
    registrations, rooms_step, messages = Step("register"), Step("rooms"), Step("messages")
    tag = secrets.token_hex(3)
    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        found = pool.map(
            lambda n: register(LoadClient(base, mails), f"agent{n}-{tag}@{DOMAIN}", registrations),
            range(args.agents),
        )
        agents = [agent for agent in found if agent is not None]
    registrations.seconds = time.monotonic() - began
    rooms = make_rooms(base, agents, rooms_step, args.retry_seconds)
    kinds = Counter(kind for _, _, kind in rooms)
    repair: dict[str, float] = {}

    def kill_and_repair() -> None:
        (spec,) = [spec for spec in appliance.specs() if spec.name == args.kill]
        process = running_process(spec)
        if process is not None:
            os.killpg(process.pid, signal.SIGKILL)
            # Gone (its listening socket closed) before `up` looks at the port; psutil.Error:
            # exited and already reaped, or a zombie, and either way its socket is shut.
            with contextlib.suppress(psutil.Error):
                process.wait(timeout=60)
        killed = time.monotonic()
        report = appliance.up()
        repair["seconds"] = time.monotonic() - killed
        repair["started"] = list(report.started)

    acknowledged = send_messages(
        base,
        rooms,
        args.messages,
        args.clients,
        messages,
        args.retry_seconds,
        kill_and_repair if args.kill else None,
    )
    lost = lost_messages(base, rooms, acknowledged)
    print(f"rooms: {len(rooms)} ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))})")
    for step in (registrations, rooms_step, messages):
        print(step.report())
    if args.kill:
        started = ", ".join(repair.get("started", [])) or "nothing"
        print(
            f"killed {args.kill} (SIGKILL) after a third of the messages; `appliance up` started "
            f"{started} in {repair.get('seconds', 0):.1f} s"
        )
    acked = sum(len(ids) for ids in acknowledged.values())
    print(f"messages acknowledged: {acked} of {args.messages}; acknowledged and lost: {lost}")
    print(f"load {os.getloadavg()[0]:.1f} at the end")
    errors = sum(sum(step.errors.values()) for step in (registrations, rooms_step, messages))
    return 0 if errors == 0 and lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
