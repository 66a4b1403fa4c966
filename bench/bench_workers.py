# SPDX-License-Identifier: AGPL-3.0-or-later
"""Synapse workers against the single process, same run: /sync fan-out, cached reads, memory.

One throwaway PostgreSQL 15 cluster (tests/workers_fixtures.py) and three evaluation
appliances started by `appliance up`'s own code, each with its own database and Redis:
``none`` (one Synapse process), ``small`` (main, generic1 for sync and client traffic, media1)
and ``standard`` with two sync workers and two client workers (9 processes). They share what
could make one look better than another: the same total database pool (TOTAL_POOL connections
split evenly over each preset's processes), the same rendered rate limits (one template), the
same machine at the same time.

* /sync fan-out: FANOUT_USERS users long-poll one room while messages are sent 4 at a time;
  a round ends when every user has received every message of the round. Deliveries per second
  = users x messages / round time. Rounds take turns (none, small, standard, then the other
  way round); ratios of the medians against ``none``, goal >= 1.5.
* Cached reads: every user asks the room's member list (Synapse's caches answer) READS times;
  ``standard`` spreads them over its two client workers (by user, as nginx's hash does), against
  ``none``; reported without a goal.
* Processes and resident memory (psutil RSS) of Synapse's processes, Redis and the router, per
  preset.

Requests go straight to the process the routing table names (router.RoutingTable, the same
table nginx is rendered from), as nginx would send them, not through the evaluation router,
whose own Python would take a share of the two cores nginx does not take in production.

    .venv/bin/python bench/bench_workers.py [rounds per preset, default 4]
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import psutil  # noqa: E402
import requests  # noqa: E402
from aiohttp import ClientSession, ClientTimeout, TCPConnector  # noqa: E402
from bench_result import at_least, cannot_run, emit, no_goal  # noqa: E402
from harness import free_port  # noqa: E402
from matrix_media_helpers import User, register_user  # noqa: E402
from workers_fixtures import (  # noqa: E402
    POSTGRES_BIN,
    PostgresCluster,
    running_postgres_cluster,
    workers_settings,
)

from appliance.config.layout import Layout  # noqa: E402
from appliance.config.render import render_all  # noqa: E402
from appliance.config.worker_routes import plan_workers  # noqa: E402
from appliance.evaluation.lifecycle import EvaluationAppliance  # noqa: E402
from appliance.evaluation.router import RoutingTable  # noqa: E402
from appliance.evaluation.supervisor import running_process  # noqa: E402

GOAL = 1.5
TOTAL_POOL = 36  # database connections, whatever the preset: 36, 3 x 12, 9 x 4
FANOUT_USERS = 40
SENDERS = 4  # messages sent 4 at a time
MESSAGES_PER_ROUND = 40
READS = 50  # member-list reads per user per round
ROUND_TIMEOUT = 300.0  # seconds: a round that does not complete stops the benchmark
PRESETS = {
    "none": {},
    "small": {},
    "standard": {"sync_workers": 2, "client_workers": 2},
}
# Only the room timeline: no presence, account data or receipts in each long poll's answer.
SYNC_FILTER = json.dumps(
    {
        "presence": {"types": []},
        "account_data": {"types": []},
        "room": {
            "timeline": {"limit": MESSAGES_PER_ROUND + 10, "types": ["m.room.message"]},
            "state": {"types": []},
            "ephemeral": {"types": []},
            "account_data": {"types": []},
        },
    }
)


@dataclass
class Deployment:
    preset: str
    appliance: EvaluationAppliance
    table: RoutingTable
    users: list[User]
    room_id: str = ""

    @property
    def settings(self):
        return self.appliance.settings

    def url(self, method: str, path: str, user: User) -> str:
        """Where nginx would send this request (the same table and the same user hash)."""
        return self.table.target(method, path, user.headers["Authorization"]) + path

    def processes(self) -> dict[str, psutil.Process]:
        """Synapse's processes, Redis and the router (not the console, clamd, scanner, mail)."""
        return {
            spec.name: process
            for spec in self.appliance.specs()
            if spec.name.startswith("synapse") or spec.name in ("redis", "router")
            if (process := running_process(spec)) is not None
        }


def deploy(preset: str, cluster: PostgresCluster, directory: Path, stack: ExitStack) -> Deployment:
    database = f"synapse_{preset}"
    cluster.create_database(database)
    state_dir = directory / preset
    plan = plan_workers(preset, base_port=8100, main_replication_port=9093, **PRESETS[preset])
    settings = workers_settings(
        state_dir,
        database=database,
        pg_port=cluster.port,
        redis=directory / f"{preset}-redis.sock",
        clamd_port=free_port(),
        preset=preset,
        pool_max=TOTAL_POOL // plan.process_count,
        **PRESETS[preset],
    )
    appliance = EvaluationAppliance(settings, Layout.from_settings(settings, state_dir))
    stack.callback(appliance.down)
    appliance.up()
    (router_json,) = [
        f.content
        for f in render_all(settings, appliance.layout)
        if f.template.endswith("router.json.j2")
    ] or [json.dumps({"main": settings.synapse_main_url, "pools": {}, "routes": []})]
    table = RoutingTable(json.loads(router_json))
    shared_secret = appliance.layout.secret("registration_shared_secret").read_text().strip()
    users = [
        register_user(settings.synapse_main_url, shared_secret, f"bench{i}")
        for i in range(FANOUT_USERS)
    ]
    deployment = Deployment(preset, appliance, table, users)
    deployment.room_id = forum_with_everyone(deployment)
    return deployment


def forum_with_everyone(deployment: Deployment) -> str:
    """A public room (a forum: unencrypted) the service account creates, every user joined
    through the Admin API (not rate limited per room, unlike 40 joins through /join)."""
    main = deployment.settings.synapse_main_url
    admin = {
        "Authorization": f"Bearer {deployment.appliance.layout.service_token.read_text().strip()}"
    }
    created = requests.post(
        f"{main}/_matrix/client/v3/createRoom",
        json={"preset": "public_chat", "name": "bench"},
        headers=admin,
        timeout=60,
    )
    if created.status_code != 200:
        cannot_run(f"{deployment.preset}: the forum could not be created: {created.text}")
    room_id = created.json()["room_id"]
    for user in deployment.users:
        joined = requests.post(
            f"{main}/_synapse/admin/v1/join/{quote(room_id)}",
            json={"user_id": user.user_id},
            headers=admin,
            timeout=60,
        )
        if joined.status_code != 200:
            cannot_run(f"{deployment.preset}: {user.user_id} could not join: {joined.text}")
    return room_id


# /sync fan-out ------------------------------------------------------------------------------


async def fanout_round(deployment: Deployment) -> float:
    """Deliveries per second of one round (every user receives every message)."""
    room, tag = deployment.room_id, secrets.token_hex(4)
    sync_path = "/_matrix/client/v3/sync"
    received = {user.user_id: 0 for user in deployment.users}
    all_received = asyncio.Event()

    async with ClientSession(
        connector=TCPConnector(limit=0), timeout=ClientTimeout(total=ROUND_TIMEOUT)
    ) as http:

        async def sync(user: User, since: str | None, timeout_ms: int) -> dict:
            params = {"filter": SYNC_FILTER, "timeout": str(timeout_ms)}
            if since:
                params["since"] = since
            url = deployment.url("GET", sync_path, user)
            async with http.get(url, params=params, headers=user.headers) as response:
                if response.status != 200:
                    raise RuntimeError(f"/sync answered {response.status}: {await response.text()}")
                return await response.json()

        async def listen(user: User, since: str) -> None:
            while received[user.user_id] < MESSAGES_PER_ROUND:
                answer = await sync(user, since, 30000)
                since = answer["next_batch"]
                timeline = answer.get("rooms", {}).get("join", {}).get(room, {}).get("timeline", {})
                received[user.user_id] += sum(
                    1
                    for event in timeline.get("events", [])
                    if event.get("content", {}).get("body", "").startswith(tag)
                )
            if all(count >= MESSAGES_PER_ROUND for count in received.values()):
                all_received.set()

        async def send(sender: User, numbers: range) -> None:
            for number in numbers:
                path = f"/_matrix/client/v3/rooms/{quote(room)}/send/m.room.message/{tag}-{number}"
                body = {"msgtype": "m.text", "body": f"{tag} message {number}"}
                async with http.put(
                    deployment.url("PUT", path, sender), json=body, headers=sender.headers
                ) as response:
                    if response.status != 200:
                        raise RuntimeError(
                            f"send answered {response.status}: {await response.text()}"
                        )

        # Everyone caught up first (not timed), then long-polling from there.
        tokens = await asyncio.gather(*(sync(user, None, 0) for user in deployment.users))
        listeners = [
            asyncio.create_task(listen(user, token["next_batch"]))
            for user, token in zip(deployment.users, tokens, strict=True)
        ]
        began = time.monotonic()
        senders = deployment.users[:SENDERS]
        await asyncio.gather(
            *(
                send(sender, range(index, MESSAGES_PER_ROUND, SENDERS))
                for index, sender in enumerate(senders)
            )
        )
        await asyncio.wait_for(asyncio.gather(*listeners), ROUND_TIMEOUT)
        elapsed = time.monotonic() - began
    return len(deployment.users) * MESSAGES_PER_ROUND / elapsed


# Cached reads -------------------------------------------------------------------------------


async def reads_round(deployment: Deployment) -> float:
    """Member-list reads per second, every user reading in parallel (after a warm-up read)."""
    path = f"/_matrix/client/v3/rooms/{quote(deployment.room_id)}/joined_members"
    async with ClientSession(
        connector=TCPConnector(limit=0), timeout=ClientTimeout(total=ROUND_TIMEOUT)
    ) as http:

        async def read(user: User, times: int) -> None:
            for _ in range(times):
                async with http.get(deployment.url("GET", path, user), headers=user.headers) as r:
                    answer = await r.json()
                    if r.status != 200 or len(answer["joined"]) != len(deployment.users) + 1:
                        raise RuntimeError(f"joined_members answered {r.status}: {answer}")

        await asyncio.gather(*(read(user, 1) for user in deployment.users))  # caches filled
        began = time.monotonic()
        await asyncio.gather(*(read(user, READS) for user in deployment.users))
        return len(deployment.users) * READS / (time.monotonic() - began)


def cpu_seconds(deployment: Deployment) -> dict[str, float]:
    """User and system CPU time so far of each of Synapse's processes (Redis, router too)."""
    times = {}
    for name, process in deployment.processes().items():
        used = process.cpu_times()
        times[name] = used.user + used.system
    return times


def alternated(rounds: int, measure, *deployments: Deployment) -> dict[str, list]:
    """Rounds in turn, the order reversed every other round (ABC CBA): each preset goes first
    and last as often as the others. Prints each round's figure and the CPU its processes used
    (seconds, and per second of the round: 2.0 is both cores)."""
    results: dict[str, list[float]] = {deployment.preset: [] for deployment in deployments}
    for index in range(rounds):
        order = deployments if index % 2 == 0 else deployments[::-1]
        for deployment in order:
            before, began = cpu_seconds(deployment), time.monotonic()
            client_before = sum(psutil.Process().cpu_times()[:2])
            figure = asyncio.run(measure(deployment))
            elapsed, after = time.monotonic() - began, cpu_seconds(deployment)
            client = sum(psutil.Process().cpu_times()[:2]) - client_before
            results[deployment.preset].append(figure)
            used = {name: after[name] - before.get(name, 0.0) for name in after}
            shares = ", ".join(f"{name} {seconds:.1f}" for name, seconds in used.items() if seconds)
            print(
                f"  round {index + 1} {deployment.preset:8} {figure:8.1f} /s in {elapsed:.1f} s; "
                f"server CPU {sum(used.values()) / elapsed:.2f} cores ({shares} s), this "
                f"client {client / elapsed:.2f}, load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    return results


def memory(deployment: Deployment) -> tuple[int, int, dict[str, int]]:
    """(Synapse processes, total MiB, MiB per process) of Synapse's processes, Redis, router."""
    rss = {
        name: process.memory_info().rss >> 20 for name, process in deployment.processes().items()
    }
    synapse = sum(1 for name in rss if name.startswith("synapse"))
    return synapse, sum(rss.values()), rss


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    if not (POSTGRES_BIN / "initdb").exists():
        cannot_run("PostgreSQL 15 is not installed: apt-get install -y postgresql")
    if shutil.which("redis-server") is None:
        cannot_run("Redis is not installed: apt-get install -y redis-server")
    # The directory outlives the stack: the appliances stop before their state is removed.
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as directory, ExitStack() as stack:
        cluster = stack.enter_context(running_postgres_cluster(max_connections=200))
        began = time.monotonic()
        deployments = {
            preset: deploy(preset, cluster, Path(directory), stack) for preset in PRESETS
        }
        print(f"three appliances up, users and forums made in {time.monotonic() - began:.0f} s")
        none, small, standard = (deployments[p] for p in PRESETS)

        print(f"/sync fan-out: {FANOUT_USERS} users, {MESSAGES_PER_ROUND} messages a round")
        fanout = alternated(rounds, fanout_round, none, small, standard)
        print(f"cached reads: {FANOUT_USERS} users x {READS} member-list reads a round")
        reads = alternated(rounds, reads_round, none, standard)
        sizes = {preset: memory(deployment) for preset, deployment in deployments.items()}

    single, split = statistics.median(fanout["none"]), statistics.median(fanout["small"])
    two_sync = statistics.median(fanout["standard"])
    read_single, read_spread = (
        statistics.median(reads["none"]),
        statistics.median(reads["standard"]),
    )
    print(
        f"deliveries per second, median: none {single:.0f}, small {split:.0f} "
        f"({split / single:.2f}x), standard with two sync workers {two_sync:.0f} "
        f"({two_sync / single:.2f}x)"
    )
    print(
        f"cached reads per second, median: standard (2 client workers) {read_spread:.0f}, "
        f"none {read_single:.0f}: {read_spread / read_single:.2f}x"
    )
    rows = [
        at_least(
            "/sync fan-out deliveries/s, small (one sync worker) / none",
            f"{split:.0f} against {single:.0f} deliveries/s",
            split / single,
            GOAL,
        ),
        at_least(
            "/sync fan-out deliveries/s, standard (two sync workers) / none",
            f"{two_sync:.0f} against {single:.0f} deliveries/s",
            two_sync / single,
            GOAL,
        ),
        no_goal(
            "cached reads/s, standard (2 client workers) / none",
            f"{read_spread:.0f} against {read_single:.0f} reads/s",
            read_spread / read_single,
        ),
    ]
    for preset, (count, total, rss) in sizes.items():
        print(f"{preset:8} {count} Synapse processes, {total} MiB: {rss}")
        rows.append(
            no_goal(
                f"{preset}: Synapse processes, resident memory",
                f"{count} processes, {total} MiB (with Redis and router)",
                None,
            )
        )
    emit("workers", rows)


if __name__ == "__main__":
    main()
