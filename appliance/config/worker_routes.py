# SPDX-License-Identifier: AGPL-3.0-or-later
"""Synapse's processes for a worker preset, and which request path goes to which of them.

The one place that knows the worker topology: the settings validate it, the renderer writes
`homeserver.yaml` and one `var/synapse/workers/<name>.yaml` per worker from it, the nginx
template routes with :data:`ROUTES`, and the tests ask :func:`process_for` where a request
lands. The routes follow Synapse's documented worker endpoint lists (docs/workers.md of
Synapse 1.163): a path no route names stays on the main process, which is where Synapse's
docs keep requestToken, 3PID changes, password, OpenID, logout, room upgrades, reports and
most of the Admin API. Media admin endpoints move with the media repository.

Names: the main process is ``main`` in ``instance_map`` and ``master`` in ``stream_writers``
and ``run_background_tasks_on`` (Synapse's own two spellings).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAIN = "main"  # the main process in instance_map
MASTER = "master"  # the main process in stream_writers and run_background_tasks_on

PRESETS = ("none", "small", "standard")

# Streams Synapse lets only one process write (synapse/config/workers.py).
SINGLE_WRITER_STREAMS = ("typing", "to_device", "account_data", "presence", "push_rules")
# Streams that accept several writers.
MULTI_WRITER_STREAMS = (
    "events",
    "receipts",
    "device_lists",
    "thread_subscriptions",
    "quarantined_media_changes",
)

# Connections kept free beside Synapse's pools: the backup's pg_dump, psql, the console.
RESERVED_CONNECTIONS = 10

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")

# What each kind of worker does, and its Synapse application.
GENERIC_APP = "synapse.app.generic_worker"
MEDIA_APP = "synapse.app.media_repository"


@dataclass(frozen=True)
class Worker:
    """One Synapse worker process: its name, its roles and its two listeners."""

    name: str
    roles: frozenset[str]
    http_port: int
    replication_port: int
    # The private address of the host it runs on (several hosts); None: the main process's host.
    host: str | None = None

    @property
    def app(self) -> str:
        return MEDIA_APP if "media" in self.roles else GENERIC_APP

    @property
    def resources(self) -> list[str]:
        """The resources of its HTTP listener (Synapse's listener `names`)."""
        if "media" in self.roles:
            return ["media"]
        if self.roles & {"sync", "client", "client_reads", "auth", "writer"}:
            return ["client", "federation"]
        if "federation_reader" in self.roles:
            return ["federation"]
        return ["health"]  # background, federation sender, pusher: no routed endpoint


@dataclass(frozen=True)
class WorkerPlan:
    """Every process of a preset and what the shared configuration says about them."""

    preset: str
    main_replication_port: int
    workers: tuple[Worker, ...] = ()
    stream_writers: dict[str, list[str]] = field(default_factory=dict)
    background_tasks_on: str = MASTER
    # The main process's host's private address (several hosts); None: one host.
    main_host: str | None = None

    def host_of(self, name: str, default: str) -> str:
        """The address a process listens on and is reached at; `default` when it runs on the
        one host (synapse.listen's address)."""
        if name == MAIN:
            return self.main_host or default
        worker = next(w for w in self.workers if w.name == name)
        return worker.host or self.main_host or default

    def processes_on(self, address: str | None) -> list[str]:
        """The processes the host with this private address runs (None: one host runs all)."""
        if address is None:
            return self.names
        return [name for name in self.names if self.host_of(name, "") == address]

    @property
    def hosts(self) -> list[str]:
        """Every host's private address that runs a Synapse process (several hosts)."""
        addresses = [self.host_of(name, "") for name in self.names]
        return sorted({address for address in addresses if address})

    @property
    def enabled(self) -> bool:
        return bool(self.workers)

    @property
    def process_count(self) -> int:
        return 1 + len(self.workers)

    @property
    def names(self) -> list[str]:
        return [MAIN, *(worker.name for worker in self.workers)]

    def with_role(self, role: str) -> list[Worker]:
        return [worker for worker in self.workers if role in worker.roles]

    @property
    def media_worker(self) -> Worker | None:
        media = self.with_role("media")
        return media[0] if media else None


@dataclass(frozen=True)
class Placement:
    """Which host runs which process, by private address (synapse.workers.hosts): the media
    repository on the media hosts, every other worker on the worker hosts, each list taken in
    turn; a kind without hosts stays on the main process's host. Empty: one host."""

    main: str | None = None
    workers: tuple[str, ...] = ()
    media: tuple[str, ...] = ()

    def host_for(self, name: str, roles: set[str]) -> str | None:
        pool = self.media if "media" in roles else self.workers
        if not pool:
            return self.main
        # The worker's number in its kind (generic1, sync2, ...) picks its host in turn.
        number = int(re.sub(r"^\D+", "", name) or 1)
        return pool[(number - 1) % len(pool)]


def plan_workers(
    preset: str,
    *,
    base_port: int,
    main_replication_port: int,
    sync_workers: int = 2,
    client_workers: int = 2,
    production: bool = False,
    placement: Placement | None = None,
) -> WorkerPlan:
    """The processes of a preset; worker i listens on base_port + 2i (HTTP) and + 2i + 1
    (replication), on the host `placement` gives it."""
    placement = placement or Placement()
    if preset == "none":
        return WorkerPlan(preset, main_replication_port, main_host=placement.main)
    roles: list[tuple[str, set[str]]]
    if preset == "small":
        # generic1 takes sync and the client requests that read; the requests that make events
        # stay on main, the one event persister: a worker would forward each event there (a
        # replication round trip) and compute its push actions for every member, the work
        # that left main idle while generic1 carried sync and sends alike.
        roles = [("generic1", {"sync", "client_reads"}), ("media1", {"media"})]
    elif preset == "standard":
        roles = [(f"sync{i}", {"sync"}) for i in range(1, sync_workers + 1)]
        roles += [(f"client{i}", {"client"}) for i in range(1, client_workers + 1)]
        # One process for login and registration, so their rate limits (kept in memory by
        # each process) stay whole.
        roles += [("auth1", {"auth"}), ("writer1", {"writer"}), ("media1", {"media"})]
        roles += [("background1", {"background"})]
        if production:
            roles += [
                ("federation_reader1", {"federation_reader"}),
                ("federation_sender1", {"federation_sender"}),
                ("pusher1", {"pusher"}),
            ]
    else:
        raise ValueError(f"unknown preset {preset!r}")
    workers = tuple(
        Worker(
            name,
            frozenset(kinds),
            base_port + 2 * i,
            base_port + 2 * i + 1,
            placement.host_for(name, kinds),
        )
        for i, (name, kinds) in enumerate(roles)
    )
    writers = [w.name for w in workers if "writer" in w.roles] or [MASTER]
    background = [w.name for w in workers if "background" in w.roles] or [MASTER]
    streams = {stream: list(writers) for stream in (*MULTI_WRITER_STREAMS, *SINGLE_WRITER_STREAMS)}
    # The media admin endpoints (quarantine) move to the media worker, and Synapse has them
    # write this stream where they run: without it, quarantining there fails (500).
    streams["quarantined_media_changes"] += [w.name for w in workers if "media" in w.roles]
    return WorkerPlan(
        preset, main_replication_port, workers, streams, background[0], placement.main
    )


def plan_problems(plan: WorkerPlan, *, pool_max: int, max_connections: int) -> list[str]:
    """What is wrong with a plan, each line naming what it is about (empty: nothing)."""
    problems = []
    seen: set[str] = set()
    for name in plan.names:
        if not _NAME.match(name) or name == MASTER:
            problems.append(f"worker name {name!r}: lowercase letters, digits and _ only")
        if name in seen:
            problems.append(f"worker name {name!r}: used twice")
        seen.add(name)
    for stream in SINGLE_WRITER_STREAMS:
        writers = plan.stream_writers.get(stream, [MASTER])
        if len(writers) != 1:
            problems.append(f"stream {stream}: Synapse allows one writer, not {writers}")
    for stream, writers in plan.stream_writers.items():
        unknown = [w for w in writers if w != MASTER and w not in seen]
        if unknown:
            problems.append(f"stream {stream}: written by unknown processes {unknown}")
    needed = pool_max * plan.process_count + RESERVED_CONNECTIONS
    if needed > max_connections:
        problems.append(
            f"connection budget: {plan.process_count} processes x {pool_max} connections "
            f"(pool_max) + {RESERVED_CONNECTIONS} reserved = {needed}, more than PostgreSQL's "
            f"max_connections ({max_connections}): lower synapse.database.pool_max or raise "
            "synapse.database.max_connections"
        )
    return problems


# The routing table --------------------------------------------------------------------------
# (role, regular expression, methods or None for all). The first route whose role some worker
# has and whose expression matches wins; no match means the main process. Order matters: the
# stream writers' endpoints come before the generic client list that also matches them.
_V = r"(api/v1|r0|v3|unstable)"
_R = r"(r0|v3|unstable)"

ROUTES: tuple[tuple[str, str, tuple[str, ...] | None], ...] = (
    # Media repository (and the media admin endpoints, which move with it).
    ("media", r"^/_matrix/media/", None),
    ("media", r"^/_matrix/client/v1/media/", None),
    ("media", r"^/_matrix/federation/v1/media/", None),
    ("media", r"^/_synapse/media/", None),
    ("media", r"^/_synapse/admin/v1/purge_media_cache$", None),
    ("media", r"^/_synapse/admin/v1/room/.*/media.*$", None),
    ("media", r"^/_synapse/admin/v1/user/.*/media.*$", None),
    ("media", r"^/_synapse/admin/v1/media/.*$", None),
    ("media", r"^/_synapse/admin/v1/quarantine_media/.*$", None),
    ("media", r"^/_synapse/admin/v1/users/.*/media$", None),
    # Sync.
    ("sync", r"^/_matrix/client/(r0|v3)/sync$", None),
    ("sync", r"^/_matrix/client/(api/v1|r0|v3)/events$", None),
    ("sync", r"^/_matrix/client/(api/v1|r0|v3)/initialSync$", None),
    ("sync", r"^/_matrix/client/(api/v1|r0|v3)/rooms/[^/]+/initialSync$", None),
    # Stream writers' own endpoints.
    ("writer", rf"^/_matrix/client/{_V}/rooms/.*/typing", None),
    ("writer", rf"^/_matrix/client/{_R}/sendToDevice/", None),
    ("writer", rf"^/_matrix/client/{_R}/.*/tags", None),
    ("writer", rf"^/_matrix/client/{_R}/.*/account_data", None),
    ("writer", rf"^/_matrix/client/{_R}/rooms/.*/receipt", None),
    ("writer", rf"^/_matrix/client/{_R}/rooms/.*/read_markers", None),
    ("writer", rf"^/_matrix/client/{_V}/presence/", None),
    ("writer", rf"^/_matrix/client/{_V}/pushrules/", None),
    # Login and registration on one process (standard), else with client traffic.
    ("auth", rf"^/_matrix/client/{_V}/login$", None),
    ("auth", rf"^/_matrix/client/{_R}/register$", None),
    ("auth", rf"^/_matrix/client/{_R}/register/available$", None),
    ("auth", r"^/_matrix/client/v1/register/m.login.registration_token/validity$", None),
    ("auth", rf"^/_matrix/client/{_R}/password_policy$", None),
    # Federation requests a generic worker serves.
    ("federation_reader", r"^/_matrix/federation/v1/(version|event|state|state_ids)(/|$)", None),
    ("federation_reader", r"^/_matrix/federation/v1/(backfill|get_missing_events)/", None),
    ("federation_reader", r"^/_matrix/federation/v1/(publicRooms|query/|hierarchy/)", None),
    ("federation_reader", r"^/_matrix/federation/v1/(make_join|make_leave|make_knock)/", None),
    ("federation_reader", r"^/_matrix/federation/(v1|v2)/(send_join|send_leave|invite)/", None),
    ("federation_reader", r"^/_matrix/federation/v1/(send_knock|event_auth)/", None),
    ("federation_reader", r"^/_matrix/federation/v1/timestamp_to_event/", None),
    ("federation_reader", r"^/_matrix/federation/v1/user/devices/", None),
    ("federation_reader", r"^/_matrix/federation/v1/send/", None),
    ("federation_reader", r"^/_matrix/key/v2/query", None),
    # Client requests any generic worker serves.
    ("client", rf"^/_matrix/client/{_V}/createRoom$", None),
    ("client", rf"^/_matrix/client/{_V}/publicRooms$", None),
    ("client", rf"^/_matrix/client/{_V}/rooms/.*/(joined_members|members|state)$", ("GET",)),
    ("client", rf"^/_matrix/client/{_V}/rooms/.*/context/.*$", None),
    ("client", r"^/_matrix/client/v1/rooms/.*/(hierarchy|threads|timestamp_to_event)$", None),
    ("client", r"^/_matrix/client/(v1|unstable)/rooms/.*/relations/", None),
    ("client", rf"^/_matrix/client/{_R}/account/whoami$", None),
    ("client", rf"^/_matrix/client/{_R}/account/deactivate$", None),
    ("client", r"^/_matrix/client/(r0|v3)/delete_devices$", None),
    ("client", rf"^/_matrix/client/{_V}/devices(/|$)", None),
    ("client", r"^/_matrix/client/versions$", None),
    ("client", rf"^/_matrix/client/{_V}/voip/turnServer$", None),
    ("client", rf"^/_matrix/client/{_V}/rooms/.*/event/", None),
    ("client", rf"^/_matrix/client/{_V}/joined_rooms$", None),
    ("client", r"^/_matrix/client/(api/v1|r0|v3|unstable/.*)/rooms/.*/aliases", None),
    ("client", rf"^/_matrix/client/{_V}/search$", None),
    ("client", rf"^/_matrix/client/{_R}/user/.*/filter(/|$)", None),
    ("client", rf"^/_matrix/client/{_V}/directory/room/.*$", None),
    ("client", rf"^/_matrix/client/{_R}/(capabilities|notifications)$", None),
    ("client", rf"^/_matrix/client/{_R}/keys/(query|changes|claim)$", None),
    ("client", rf"^/_matrix/client/{_R}/room_keys/", None),
    ("client", rf"^/_matrix/client/{_R}/keys/upload", None),
    ("client", rf"^/_matrix/client/{_V}/keys/(device_signing|signatures)/upload$", None),
    # Requests that make events (a read of a state event or a profile is a read).
    ("send", rf"^/_matrix/client/{_V}/rooms/.*/(redact|send)", None),
    ("client", rf"^/_matrix/client/{_V}/rooms/.*/state/", ("GET",)),
    ("send", rf"^/_matrix/client/{_V}/rooms/.*/state/", None),
    ("send", rf"^/_matrix/client/{_V}/rooms/.*/(join|invite|leave|ban|unban|kick)$", None),
    ("send", rf"^/_matrix/client/{_V}/(join|knock)/", None),
    ("client", rf"^/_matrix/client/{_V}/profile/", ("GET",)),
    ("send", rf"^/_matrix/client/{_V}/profile/", None),
    ("client", rf"^/_matrix/client/{_R}/user_directory/search$", None),
    # Synapse's docs: every pagination request for a room on one process.
    ("messages", rf"^/_matrix/client/{_V}/rooms/.*/messages$", None),
    ("client", rf"^/_matrix/client/{_V}/pushrules/", ("GET",)),
    ("client", rf"^/_matrix/client/{_R}/.*/(tags|account_data)", ("GET",)),
    ("client", rf"^/_matrix/client/{_V}/presence/", ("GET",)),
    ("client", r"^/_synapse/admin/v1/rooms/[^/]+$", ("GET",)),
)

# Which roles take which route roles: a small preset's one generic worker does it all.
_SERVES = {
    "sync": {"sync"},
    "client": {"client", "send", "auth", "federation_reader", "messages"},
    "client_reads": {"client", "auth", "federation_reader", "messages"},
    "auth": {"auth"},
    "writer": {"writer"},
    "media": {"media"},
    "federation_reader": {"federation_reader"},
}

_COMPILED = tuple((role, re.compile(pattern), methods) for role, pattern, methods in ROUTES)


# Route roles that one process only may take, whatever the pool (pagination, per Synapse).
_ONE_PROCESS = {"messages"}


def is_media_path(path: str) -> bool:
    """Whether the media repository serves this path (media and media admin endpoints)."""
    return any(role == "media" and pattern.match(path) for role, pattern, _ in _COMPILED)


def _workers_for(plan: WorkerPlan, route_role: str) -> list[Worker]:
    """The workers that take a route's role: dedicated ones first, else those that serve it."""
    dedicated = plan.with_role(route_role)
    if not dedicated:
        dedicated = [
            w for w in plan.workers if any(route_role in _SERVES.get(r, ()) for r in w.roles)
        ]
    return dedicated[:1] if route_role in _ONE_PROCESS else dedicated


def processes_for(plan: WorkerPlan, method: str, path: str) -> list[str]:
    """The processes that may serve this request (one pool), main if no worker does."""
    for role, pattern, methods in _COMPILED:
        if methods is not None and method.upper() not in methods:
            continue
        if pattern.match(path):
            workers = _workers_for(plan, role)
            if workers:
                return [w.name for w in workers]
    return [MAIN]


def process_for(plan: WorkerPlan, method: str, path: str) -> str:
    """The first process that serves this request (the whole pool: :func:`processes_for`)."""
    return processes_for(plan, method, path)[0]


def nginx_routes(plan: WorkerPlan) -> list[dict]:
    """The routes the nginx template writes: one location per route a worker takes, in order.

    Each dict has `pattern`, `methods` (None: all) and `upstream` (a pool name)."""
    routes = []
    for role, pattern, methods in ROUTES:
        workers = _workers_for(plan, role)
        if workers:
            upstream = "synapse_" + "_".join(sorted(w.name for w in workers))
            routes.append({"pattern": pattern, "methods": methods, "upstream": upstream})
    return routes


def upstreams(plan: WorkerPlan) -> dict[str, list[Worker]]:
    """Every pool :func:`nginx_routes` names, with its workers."""
    pools: dict[str, list[Worker]] = {}
    for role, _pattern, _methods in ROUTES:
        workers = _workers_for(plan, role)
        if workers:
            pools["synapse_" + "_".join(sorted(w.name for w in workers))] = workers
    return pools


def router_table(plan: WorkerPlan, *, host: str, main_url: str) -> dict:
    """What the evaluation router (appliance.evaluation.router) routes with: the same routes
    and pools as nginx, each pool as its workers' URLs, anything else to `main_url`."""
    pools = {
        name: [f"http://{host}:{worker.http_port}" for worker in workers]
        for name, workers in upstreams(plan).items()
    }
    return {"main": main_url, "pools": pools, "routes": nginx_routes(plan)}
