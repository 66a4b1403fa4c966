# SPDX-License-Identifier: AGPL-3.0-or-later
"""Synapse workers (synapse.workers.preset small): the module's rules hold on every process.

A real PostgreSQL 15 cluster and a private Redis (tests/workers_fixtures.py), the main process
and the small preset's two workers started from the rendered files, the session appliance's
clamd. Hostile requests go straight to the process they target (as a client that bypasses the
reverse proxy would); polite ones go where the routing table (appliance.config.worker_routes,
the same one nginx is rendered from) sends them.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psutil
import pytest
import requests
import yaml
from harness import evaluation_settings, free_port
from matrix_helpers import PASSWORD, MatrixClient, Person, SideServices
from matrix_media_helpers import EICAR, User, register_user, unique_bytes
from synapse.config.homeserver import HomeServerConfig
from workers_fixtures import workers_settings

from appliance.addresses.media_ref import MediaRef
from appliance.config.layout import Layout
from appliance.config.render import render_all, write_all
from appliance.config.secrets_store import ensure_secrets
from appliance.config.settings import (
    HostSettings,
    NginxSettings,
    Settings,
    SettingsError,
    parse_settings,
)
from appliance.config.worker_routes import (
    MAIN,
    MASTER,
    WorkerPlan,
    plan_problems,
    plan_workers,
    process_for,
    processes_for,
)
from appliance.evaluation import services
from appliance.evaluation.lifecycle import EvaluationAppliance
from appliance.evaluation.supervisor import start, stop, wait_until_ready
from appliance.operations.service_account import SERVICE_LOCALPART, ensure_service_token
from appliance.synapse_module.accounts.identity_lookup import INFO_PATH
from appliance.synapse_module.admin_api.domains import DOMAINS_PATH
from appliance.synapse_module.admin_api.quarantine import QUARANTINE_PATH
from appliance.synapse_module.admin_api.users import USERS_PATH
from appliance.synapse_module.media.scan import INFECTED_MESSAGE
from appliance.synapse_module.rooms.kinds import FORUM_UNENCRYPTED, INVITE_ONLY

TIMEOUT = 30
EICAR_SIGNATURE = "Appliance.Evaluation.EICAR-Test-File.UNOFFICIAL"
# How soon a change to the allowlist made through one process must hold on every other one.
ALLOWLIST_BOUND_SECONDS = 5.0


# --- settings and processes ------------------------------------------------------------------


class WorkersAppliance(SideServices):
    """The main process, then every worker of the plan (each from its rendered file)."""

    def __init__(self, settings: Settings, layout: Layout, *, workers_first: bool = False):
        self.plan: WorkerPlan = settings.worker_plan()
        self.main = services.synapse(settings, layout)
        self.workers = services.synapse_workers(settings, layout)
        sink = services.mail_sink(settings, layout)
        processes = [*self.workers, self.main] if workers_first else [self.main, *self.workers]
        router = services.router(settings, layout)
        super().__init__(settings, layout, [sink, *processes, router])
        host = settings.synapse.listen.connect_host
        # The local router, where clients go (as nginx in production).
        self.router_url = settings.synapse.listen.url
        self.url = settings.synapse_main_url
        self.urls = {MAIN: self.url}
        self.replication_urls = {MAIN: f"http://{host}:{self.plan.main_replication_port}"}
        for worker in self.plan.workers:
            self.urls[worker.name] = f"http://{host}:{worker.http_port}"
            self.replication_urls[worker.name] = f"http://{host}:{worker.replication_port}"

    def routed_client(self) -> RoutedClient:
        return RoutedClient(self)

    def direct_client(self, process: str) -> MatrixClient:
        """A client that sends every request to one process, whatever the routes say."""
        return MatrixClient(self.urls[process], self.layout.mail_dir)

    def log(self, process: str) -> str:
        name = "synapse" if process == MAIN else f"synapse-{process}"
        return self.layout.logfile(name).read_text(errors="replace")

    def admin_token(self) -> str:
        """A server admin's token, made the way the appliance makes the console's."""
        ensure_service_token(
            self.url,
            shared_secret_file=self.layout.secret("registration_shared_secret"),
            password_file=self.layout.secret("synapse-service-password"),
            token_file=self.layout.service_token,
        )
        return self.layout.service_token.read_text().strip()


class RoutingSession(requests.Session):
    """Sends each request to the process the routing table names, as nginx does; records it."""

    def __init__(self, appliance: WorkersAppliance):
        super().__init__()
        self._appliance = appliance
        self.served: list[tuple[str, str, str]] = []

    def request(self, method, url, *args, **kwargs):
        parts = urlsplit(url)
        process = process_for(self._appliance.plan, method, parts.path)
        target = urlsplit(self._appliance.urls[process])
        self.served.append((method.upper(), parts.path, process))
        return super().request(
            method, urlunsplit(parts._replace(netloc=target.netloc)), *args, **kwargs
        )


class RoutedClient(MatrixClient):
    def __init__(self, appliance: WorkersAppliance):
        self.session = RoutingSession(appliance)
        super().__init__(appliance.urls[MAIN], appliance.layout.mail_dir, self.session)

    def served_by(self, method: str, path_end: str) -> list[str]:
        return [p for m, path, p in self.session.served if m == method and path.endswith(path_end)]


@pytest.fixture(scope="module")
def small(
    tmp_path_factory, postgres_cluster, redis_socket, appliance
) -> Iterator[WorkersAppliance]:
    postgres_cluster.create_database("synapse_small")
    state_dir = tmp_path_factory.mktemp("workers-small")
    settings = workers_settings(
        state_dir,
        database="synapse_small",
        pg_port=postgres_cluster.port,
        redis=redis_socket.socket,
        clamd_port=appliance.settings.clamav.listen.port,
        # Mail for every new account: its records on PostgreSQL, its pushers on main.
        extra={"notifications": {"enabled_for_new_users": True}},
    )
    layout = Layout.from_settings(settings, state_dir)
    redis_socket.share_with(layout)
    with WorkersAppliance(settings, layout) as running:
        for process in running.urls:
            wait_for_lookup(running.direct_client(process), "probe@ac-paris.fr", 200)
        yield running


@pytest.fixture(scope="module")
def admin(small) -> str:
    return small.admin_token()


def wait_for(condition: Callable[[], bool], what: str, timeout: float) -> float:
    """Poll until condition() holds; return how long it took (bounded, never a fixed sleep)."""
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.1)
    return time.monotonic() - began


def wait_for_lookup(client: MatrixClient, address: str, status: int, timeout: float = 60.0):
    wait_for(
        lambda: client.identity_info(address).status_code == status,
        f"the identity lookup of {address} answering {status} at {client.base_url}",
        timeout,
    )


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


# --- settings: refused with the key's path and the reason ---------------------------------------

WORKERS_ON_POSTGRES = {
    "database": {"engine": "postgresql"},
    "workers": {"preset": "small"},
    "redis": {"path": "/run/appliance/redis.sock"},
}


@pytest.mark.parametrize(
    "synapse, problem",
    [
        (
            {**WORKERS_ON_POSTGRES, "database": {"engine": "sqlite"}},
            "synapse.workers.preset: small needs PostgreSQL (synapse.database.engine: "
            "postgresql): processes cannot share SQLite",
        ),
        (
            {k: v for k, v in WORKERS_ON_POSTGRES.items() if k != "redis"},
            "synapse.workers.preset: small needs synapse.redis (Synapse's processes replicate "
            "through Redis)",
        ),
        (
            {**WORKERS_ON_POSTGRES, "database": {"engine": "postgresql", "pool_max": 40}},
            "synapse.workers: connection budget: 3 processes x 40 connections (pool_max) + 10 "
            "reserved = 130, more than PostgreSQL's max_connections (100): lower "
            "synapse.database.pool_max or raise synapse.database.max_connections",
        ),
        (
            {**WORKERS_ON_POSTGRES, "workers": {"preset": "small", "sync_workers": 3}},
            "synapse.workers.sync_workers: only used with preset standard",
        ),
        (
            {**WORKERS_ON_POSTGRES, "workers": {"preset": "small", "base_port": 8079}},
            "synapse.workers: worker generic1 (replication) would listen on port 8080, already "
            "console.listen's",
        ),
        (
            {**WORKERS_ON_POSTGRES, "redis": {"path": "redis.sock"}},
            "synapse.redis: path: redis.sock is not an absolute path",
        ),
        (
            {**WORKERS_ON_POSTGRES, "redis": {"path": "/run/r.sock", "host": "10.0.0.5"}},
            "synapse.redis: give either path (a unix socket) or host, not both nor neither",
        ),
        ({"workers": {"preset": "large"}}, "synapse.workers.preset: Input should be 'none'"),
        (
            {**WORKERS_ON_POSTGRES, "redis": {"host": "10.0.0.5", "password": "in-clear"}},
            "synapse.redis: password: not set here any more; the appliance generates it into "
            "<state_dir>/secrets/redis_password (mode 0600), which Synapse reads",
        ),
    ],
)
def test_bad_worker_settings_are_refused_with_the_key_and_the_reason(synapse, problem):
    with pytest.raises(SettingsError) as caught:
        parse_settings({"synapse": synapse}, "test settings")
    assert any(line.startswith(problem) for line in caught.value.problems), caught.value.problems


def test_a_plan_with_two_writers_of_a_single_writer_stream_or_a_bad_name_is_refused():
    plan = plan_workers("small", base_port=8100, main_replication_port=9093)
    two_typing_writers = replace(plan, stream_writers={"typing": ["master", "generic1"]})
    badly_named = replace(
        plan, workers=(replace(plan.workers[0], name="Master"), *plan.workers[1:])
    )

    assert plan_problems(plan, pool_max=10, max_connections=100) == []
    assert plan_problems(two_typing_writers, pool_max=10, max_connections=100) == [
        "stream typing: Synapse allows one writer, not ['master', 'generic1']"
    ]
    assert plan_problems(badly_named, pool_max=10, max_connections=100) == [
        "worker name 'Master': lowercase letters, digits and _ only"
    ]


# --- rendering: every file loads in Synapse's own parser ----------------------------------------


@pytest.mark.parametrize(
    "preset, mode",
    [("small", "evaluation"), ("standard", "evaluation"), ("standard", "production")],
)
def test_every_worker_file_loads_in_synapses_parser_and_carries_no_module(tmp_path, preset, mode):
    data = {
        "mode": mode,
        "synapse": {
            "database": {"engine": "postgresql", "max_connections": 200},
            "workers": {"preset": preset},
            "redis": {"path": "/run/appliance/redis.sock"},
        },
        "paths": {"state_dir": str(tmp_path / "var")},
    }
    if mode == "production":
        data |= {
            "public_baseurl": "https://chat.example.org/",
            "clamav": {"signatures": "freshclam"},
        }
    settings = parse_settings(data, "test settings")
    layout = Layout.from_settings(settings, tmp_path)
    ensure_secrets(layout)
    write_all(render_all(settings, layout))
    plan = settings.worker_plan()
    homeserver = str(layout.homeserver_config)

    main = HomeServerConfig.load_config("main", ["-c", homeserver])
    assert main.worker.worker_app is None and main.redis.redis_enabled
    # Redis's password: generated once (0600), read by Synapse from its file, never inline.
    redis_password = layout.secret("redis_password")
    assert redis_password.stat().st_mode & 0o777 == 0o600
    assert main.redis.redis_password == redis_password.read_text().strip()
    assert main.redis.redis_password not in layout.homeserver_config.read_text()
    # "main" in instance_map; each worker's parser renames it "master" (checked below).
    assert main.worker.instance_map[MAIN].port == plan.main_replication_port
    assert main.media.can_load_media_repo is False  # media moved to its worker
    assert (
        main.worker.worker_replication_secret
        == layout.secret("worker_replication_secret").read_text().strip()
    )
    assert sorted(p.name for p in layout.synapse_workers_dir.iterdir()) == sorted(
        f"{w.name}.yaml" for w in plan.workers
    )
    for worker in plan.workers:
        path = layout.worker_config(worker.name)
        own = yaml.safe_load(path.read_text())
        # The module (and every other shared setting) only comes from homeserver.yaml.
        assert set(own) == {"worker_app", "worker_name", "worker_log_config", "worker_listeners"}
        config = HomeServerConfig.load_config(worker.name, ["-c", homeserver, "-c", str(path)])
        assert config.worker.worker_name == worker.name
        assert config.worker.instance_map[worker.name].port == worker.replication_port
        assert config.worker.instance_map[MASTER].port == plan.main_replication_port
        assert [m[0].__name__ for m in config.modules.loaded_modules] == ["ApplianceModule"]
        assert config.media.can_load_media_repo is ("media" in worker.roles)
        assert config.worker.run_background_tasks is (plan.background_tasks_on == worker.name)
        ports = {listener.port for listener in config.worker.worker_listeners}
        assert ports == {worker.http_port, worker.replication_port}


def test_production_renders_a_worker_unit_and_a_target_starting_main_then_workers(tmp_path):
    settings = parse_settings(
        {
            "mode": "production",
            "public_baseurl": "https://chat.example.org/",
            "clamav": {"signatures": "freshclam"},
            "host": {"system_root": str(tmp_path / "root"), "service_user": "synapse"},
            "synapse": {
                "database": {"engine": "postgresql"},
                "workers": {"preset": "small"},
                "redis": {"path": "/run/appliance/redis.sock"},
            },
            "paths": {"state_dir": str(tmp_path / "var")},
        },
        "test settings",
    )
    layout = Layout.from_settings(settings, tmp_path)
    units = {f.path.name: f.content for f in render_all(settings, layout)}

    # The content scanner fetches media from the media worker (main has no media repository).
    scanner = json.loads(units["content-scanner.json"])
    assert (
        scanner["synapse_url"]
        == f"http://127.0.0.1:{settings.worker_plan().media_worker.http_port}"
    )
    unit = units["appliance-synapse-worker@.service"]
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert exec_start.endswith(
        f"--config-path={layout.homeserver_config} "
        f"--config-path={layout.synapse_workers_dir}/%i.yaml"
    )
    assert "After=network-online.target appliance-synapse.service" in unit
    wants = next(
        line for line in units["appliance-synapse.target"].splitlines() if "Wants=" in line
    )
    assert wants.split("=")[1].split() == [
        "appliance-synapse.service",
        "appliance-synapse-worker@generic1.service",
        "appliance-synapse-worker@media1.service",
    ]


def test_the_preset_none_renders_no_worker_part(tmp_path):
    settings = evaluation_settings(tmp_path)
    layout = Layout.from_settings(settings, tmp_path)
    files = render_all(settings, layout)
    homeserver = next(f for f in files if f.path == layout.homeserver_config).content
    for key in ("instance_map", "stream_writers", "redis", "enable_media_repo", "replication"):
        assert key not in homeserver
    assert not [f for f in files if f.path.is_relative_to(layout.synapse_workers_dir)]


# --- routes: Synapse's documented lists, and what stays on main ---------------------------------

SMALL_ROUTES = [
    ("GET", "/_matrix/client/v3/sync", "generic1"),
    ("POST", "/_matrix/client/v3/register", "generic1"),
    ("POST", "/_matrix/client/v3/login", "generic1"),
    ("POST", "/_matrix/client/v3/createRoom", "generic1"),
    # Events are made on main, their one persister; reads of state and profiles are not.
    ("PUT", "/_matrix/client/v3/rooms/!a:x/send/m.room.message/1", MAIN),
    ("PUT", "/_matrix/client/v3/rooms/!a:x/state/m.room.name/", MAIN),
    ("GET", "/_matrix/client/v3/rooms/!a:x/state/m.room.name/", "generic1"),
    ("POST", "/_matrix/client/v3/rooms/!a:x/invite", MAIN),
    ("PUT", "/_matrix/client/v3/profile/@a:x/displayname", MAIN),
    ("GET", "/_matrix/client/v3/profile/@a:x", "generic1"),
    # A state key or transaction ID that reads like a read endpoint is still a write.
    ("PUT", "/_matrix/client/v3/rooms/!a:x/state/m.room.name/state", MAIN),
    ("PUT", "/_matrix/client/v3/rooms/!a:x/send/m.room.message/state", MAIN),
    ("GET", "/_matrix/client/v3/rooms/!a:x/state", "generic1"),
    ("GET", "/_matrix/client/v3/pushrules/", "generic1"),
    ("PUT", "/_matrix/client/v3/pushrules/global/override/x", MAIN),  # a stream writer's
    ("POST", "/_matrix/media/v3/upload", "media1"),
    ("GET", "/_matrix/client/v1/media/download/x/y", "media1"),
    ("POST", "/_synapse/admin/v1/media/quarantine/x/y", "media1"),
    # Synapse keeps these on the main process.
    ("POST", "/_matrix/client/v3/register/email/requestToken", MAIN),
    ("POST", "/_matrix/client/v3/account/3pid/add", MAIN),
    ("POST", "/_matrix/client/v3/account/password", MAIN),
    ("POST", "/_matrix/client/v3/user/@a:x/openid/request_token", MAIN),
    ("POST", "/_matrix/client/v3/logout", MAIN),
    ("POST", "/_matrix/client/v3/rooms/!a:x/upgrade", MAIN),
    ("POST", "/_matrix/client/v3/rooms/!a:x/report/$e", MAIN),
    ("GET", "/_synapse/admin/v2/users/@a:x", MAIN),
    ("GET", DOMAINS_PATH, MAIN),
    ("GET", "/_synapse/client/password_reset/email/submit_token", MAIN),
]


@pytest.mark.parametrize("method, path, process", SMALL_ROUTES)
def test_the_small_preset_routes_as_synapses_worker_docs_say(method, path, process):
    settings = parse_settings(
        {
            "synapse": {
                "database": {"engine": "postgresql"},
                "workers": {"preset": "small"},
                "redis": {"path": "/run/r.sock"},
            }
        },
        "test settings",
    )
    assert process_for(settings.worker_plan(), method, path) == process


STANDARD_ROUTES = [
    ("GET", "/_matrix/client/v3/sync", ["sync1", "sync2"]),
    ("POST", "/_matrix/client/v3/register", ["auth1"]),  # one process: whole rate limits
    ("POST", "/_matrix/client/v3/login", ["auth1"]),
    ("PUT", "/_matrix/client/v3/rooms/!a:x/typing/@a:x", ["writer1"]),
    ("PUT", "/_matrix/client/v3/sendToDevice/m.x/1", ["writer1"]),
    ("PUT", "/_matrix/client/v3/pushrules/global/override/x", ["writer1"]),
    ("GET", "/_matrix/client/v3/rooms/!a:x/members", ["client1", "client2"]),
    ("GET", "/_matrix/client/v3/rooms/!a:x/messages", ["client1"]),  # pagination: one process
    ("PUT", "/_matrix/client/v3/rooms/!a:x/send/m.room.message/1", ["client1", "client2"]),
    ("GET", "/_matrix/federation/v1/event/$e", ["federation_reader1"]),
    ("POST", "/_matrix/media/v3/upload", ["media1"]),
    ("POST", "/_matrix/client/v3/account/password", [MAIN]),
]


@pytest.mark.parametrize("method, path, processes", STANDARD_ROUTES)
def test_the_standard_preset_routes_to_its_pools(method, path, processes):
    settings = parse_settings(
        {
            "mode": "production",
            "public_baseurl": "https://chat.example.org/",
            "clamav": {"signatures": "freshclam"},
            "synapse": {
                "database": {"engine": "postgresql", "max_connections": 200},
                "workers": {"preset": "standard"},
                "redis": {"host": "10.0.0.5"},
            },
        },
        "test settings",
    )
    assert processes_for(settings.worker_plan(), method, path) == processes


# --- the module on every process ----------------------------------------------------------------


def test_every_module_endpoint_answers_on_every_process_and_listener(small, admin):
    listeners = {**small.urls, **{f"{p} replication": u for p, u in small.replication_urls.items()}}
    for listener, url in listeners.items():
        lookup = requests.get(
            url + INFO_PATH, params={"medium": "email", "address": "a@ac-paris.fr"}, timeout=TIMEOUT
        )
        assert lookup.json() == {"hs": small.settings.server_name}, (listener, lookup.text)
        for path in (DOMAINS_PATH, QUARANTINE_PATH, USERS_PATH):
            anonymous = requests.get(url + path, timeout=TIMEOUT)
            assert (anonymous.status_code, anonymous.json()["errcode"]) == (
                401,
                "M_MISSING_TOKEN",
            ), (listener, path, anonymous.text)
            listed = requests.get(url + path, headers=_bearer(admin), timeout=TIMEOUT)
            assert listed.status_code == 200, (listener, path, listed.text)
        identity = requests.get(url + "/_matrix/identity/v2", timeout=TIMEOUT)
        assert identity.status_code == 200, (listener, identity.text)


def test_an_allowlist_change_holds_on_the_worker_within_5_seconds(small, admin):
    main, worker = small.direct_client(MAIN), small.direct_client("generic1")
    domain = f"w{secrets.token_hex(3)}.fr"
    address = f"agent@{domain}"

    added = requests.put(f"{small.urls[MAIN]}{DOMAINS_PATH}/{domain}", headers=_bearer(admin))
    assert added.status_code == 201, added.text
    took_add = wait_for(
        lambda: worker.identity_info(address).json() == {"hs": small.settings.server_name},
        "the added domain on the worker",
        ALLOWLIST_BOUND_SECONDS,
    )
    # The address is verified while its domain is allowed...
    session = main.verify("register", address)

    removed = requests.delete(f"{small.urls[MAIN]}{DOMAINS_PATH}/{domain}", headers=_bearer(admin))
    assert removed.status_code == 200, removed.text
    took_remove = wait_for(
        lambda: worker.identity_info(address).json().get("requires_invite") is True,
        "the removed domain on the worker",
        ALLOWLIST_BOUND_SECONDS,
    )
    # ... and registered, once the domain is gone, straight at the worker.
    refused = worker.register(session)

    assert (refused.status_code, refused.json()["errcode"]) == (403, "M_THREEPID_DENIED")
    assert main.user_of_email(address, admin).status_code == 404  # no account at all
    print(f"allowlist on the worker: added in {took_add:.2f} s, removed in {took_remove:.2f} s")


def test_registration_goes_through_the_worker(small, admin):
    client = small.routed_client()
    address = f"jeanne.{secrets.token_hex(3)}@ac-paris.fr"

    account = client.register_account(address)

    assert client.served_by("POST", "/register") == ["generic1", "generic1"]
    assert client.served_by("POST", "/requestToken") == [MAIN]
    assert small.direct_client(MAIN).whoami(account.access_token).json()["user_id"] == (
        account.user_id
    )
    assert f"jeanne.{address.split('.')[1].split('@')[0]}" in account.user_id


def test_new_accounts_get_their_email_pusher_from_the_main_process(small, admin, postgres_cluster):
    # Registered on the worker (recorded there), the address bound on main (Synapse hands the
    # email flow's binding to main): one pusher, and no record left in PostgreSQL.
    client = small.routed_client()
    address = f"paula.{secrets.token_hex(3)}@ac-paris.fr"
    account = client.register_account(address)
    assert client.served_by("POST", "/register") == ["generic1", "generic1"]
    # The Admin API (main): the account first, its address afterwards, which only the
    # module gives a pusher.
    name = f"robin.{secrets.token_hex(3)}"
    later = f"@{name}-ac-paris.fr:{small.settings.server_name}"
    users = f"{small.urls[MAIN]}/_synapse/admin/v2/users/{quote(later)}"
    threepids = [{"medium": "email", "address": f"{name}@ac-paris.fr"}]
    for body in ({"password": PASSWORD}, {"threepids": threepids}):
        response = requests.put(users, json=body, headers=_bearer(admin), timeout=TIMEOUT)
        assert response.status_code in (200, 201), response.text

    for user_id in (account.user_id, later):
        pushers = requests.get(
            f"{small.urls[MAIN]}/_synapse/admin/v1/users/{quote(user_id)}/pushers",
            headers=_bearer(admin),
            timeout=TIMEOUT,
        ).json()["pushers"]
        assert [p["kind"] for p in pushers] == ["email"], user_id
    waiting = postgres_cluster.psql(
        "SELECT user_id FROM appliance_new_account_mail WHERE user_id IN"
        f" ('{account.user_id}', '{later}')",
        database="synapse_small",
    )
    assert waiting == ""


def test_registration_without_an_email_is_refused_on_the_worker(small, admin):
    worker = small.direct_client("generic1")
    username = f"nomail{secrets.token_hex(3)}"
    body = {"username": username, "password": "Aa1-" + secrets.token_urlsafe(12)}
    first = worker.post("/_matrix/client/v3/register", body)
    session = first.json().get("session")
    forged = worker.post(
        "/_matrix/client/v3/register",
        {**body, "auth": {"type": "m.login.dummy", "session": session}},
    )

    assert forged.status_code == 401, forged.text  # the email stage is still required
    assert all(flow["stages"] == ["m.login.email.identity"] for flow in first.json()["flows"])
    user = f"@{username}:{small.settings.server_name}"
    gone = requests.get(
        f"{small.urls[MAIN]}/_synapse/admin/v2/users/{user}",
        headers=_bearer(admin),
        timeout=TIMEOUT,
    )
    assert gone.status_code == 404


def test_room_rules_refuse_on_the_worker(small):
    client = small.routed_client()
    agent = Person.register(client, f"paul.{secrets.token_hex(3)}@ac-paris.fr")
    # As Element creates a private room: guest access in initial_state.
    room = agent.new_room(
        preset="private_chat",
        initial_state=[{"type": "m.room.guest_access", "content": {"guest_access": "forbidden"}}],
    )
    assert client.served_by("POST", "/createRoom") == ["generic1"]

    worker = Person(small.direct_client("generic1"), agent.user_id, agent.token)
    opened = worker.put_state(room, "m.room.join_rules", {"join_rule": "public"})
    before = worker.joined_rooms()
    encrypted_forum = worker.create_room(
        preset="public_chat",
        initial_state=[
            {
                "type": "m.room.encryption",
                "state_key": "",
                "content": {"algorithm": "m.megolm.v1.aes-sha2"},
            }
        ],
    )

    assert (opened.status_code, opened.json()) == (
        403,
        {"errcode": "M_FORBIDDEN", "error": INVITE_ONLY},
    )
    assert (encrypted_forum.status_code, encrypted_forum.json()) == (
        403,
        {"errcode": "M_FORBIDDEN", "error": FORUM_UNENCRYPTED},
    )
    assert worker.joined_rooms() == before  # nothing half-created
    state = Person(small.direct_client(MAIN), agent.user_id, agent.token).state(room)
    assert state[("m.room.join_rules", "")] == {"join_rule": "invite"}
    assert state[("m.room.encryption", "")]["algorithm"] == "m.megolm.v1.aes-sha2"


def test_eicar_is_refused_on_the_media_worker_and_quarantined(small, admin):
    secret = small.layout.secret("registration_shared_secret").read_text().strip()
    uploader: User = register_user(small.urls[MAIN], secret, "worker-media")
    media = small.urls["media1"]

    infected = requests.post(
        f"{media}/_matrix/media/v3/upload",
        data=EICAR,
        headers={**uploader.headers, "Content-Type": "text/plain"},
        timeout=TIMEOUT,
    )
    clean_bytes = unique_bytes()
    clean = requests.post(
        f"{media}/_matrix/media/v3/upload", data=clean_bytes, headers=uploader.headers, timeout=60
    )

    assert infected.status_code == 403, infected.text
    assert infected.json() == {
        "errcode": "M_FORBIDDEN",
        "error": INFECTED_MESSAGE.format(signature=EICAR_SIGNATURE),
    }
    sha256 = hashlib.sha256(EICAR).hexdigest()
    records = requests.get(
        small.urls[MAIN] + QUARANTINE_PATH, params={"limit": 1000}, headers=_bearer(admin)
    ).json()["records"]
    assert [r["user_id"] for r in records if r["sha256"] == sha256] == [uploader.user_id]
    assert clean.status_code == 200, clean.text
    server_name, media_id = clean.json()["content_uri"].removeprefix("mxc://").split("/")
    served = requests.get(
        f"{media}/_matrix/client/v1/media/download/{server_name}/{media_id}",
        headers=uploader.headers,
        timeout=TIMEOUT,
    )
    assert served.content == clean_bytes
    # The main process no longer serves media at all (enable_media_repo: false).
    on_main = requests.post(
        f"{small.urls[MAIN]}/_matrix/media/v3/upload", data=EICAR, headers=uploader.headers
    )
    assert on_main.status_code in (404, 405), on_main.text


def test_the_identity_service_openid_path_works_on_the_worker(small):
    client = small.routed_client()
    agent = Person.register(client, f"iris.{secrets.token_hex(3)}@ac-paris.fr")
    issued = client.post(
        f"/_matrix/client/v3/user/{quote(agent.user_id)}/openid/request_token",
        {},
        token=agent.token,
    )
    assert issued.status_code == 200, issued.text
    worker = small.urls["generic1"]
    body = {**issued.json(), "matrix_server_name": small.settings.server_name}

    registered = requests.post(
        f"{worker}/_matrix/identity/v2/account/register", json=body, timeout=TIMEOUT
    )
    forged = requests.post(
        f"{worker}/_matrix/identity/v2/account/register",
        json={**body, "access_token": secrets.token_urlsafe(24)},
        timeout=TIMEOUT,
    )

    assert registered.status_code == 200, registered.text
    account = requests.get(
        f"{worker}/_matrix/identity/v2/account",
        headers=_bearer(registered.json()["token"]),
        timeout=TIMEOUT,
    )
    assert account.json() == {"user_id": agent.user_id}
    assert (forged.status_code, forged.json()) == (
        401,
        {"errcode": "M_UNKNOWN_TOKEN", "error": "The OpenID token is unknown or expired"},
    )


def test_the_console_health_page_checks_every_worker(small, tmp_path):
    from admin_console import create_app

    rendered = json.loads(small.layout.console_config.read_text())
    app = create_app(
        {
            **rendered,
            "TESTING": True,
            "SECRET_KEY": "test-secret-key",
            "DATABASE": str(tmp_path / "console.sqlite3"),
            "FIRST_OPERATOR_FILE": str(tmp_path / "console-admin.json"),
        }
    )
    with app.app_context():
        from admin_console.health import run_checks

        checks = {check.name: check for check in run_checks()}

    assert set(rendered["SYNAPSE_WORKERS"]) == {"generic1", "media1"}
    for name in ("synapse", "synapse-generic1", "synapse-media1"):
        assert checks[name].ok, checks[name]


def test_the_consoles_media_actions_reach_the_media_worker(small, admin):
    from admin_console.synapse_admin import media
    from admin_console.synapse_admin.client import (
        SynapseClient,
        SynapseRefused,
        SynapseUnavailable,
    )

    secret = small.layout.secret("registration_shared_secret").read_text().strip()
    user: User = register_user(small.urls[MAIN], secret, "console-media")
    uploaded = requests.post(
        f"{small.urls['media1']}/_matrix/media/v3/upload",
        data=unique_bytes(),
        headers=user.headers,
        timeout=60,
    )
    ref = MediaRef.from_mxc(uploaded.json()["content_uri"])
    token_file = small.layout.service_token
    main_only = SynapseClient(small.urls[MAIN], token_file)
    with_media = SynapseClient(small.urls[MAIN], token_file, media_url=small.urls["media1"])

    with pytest.raises((SynapseRefused, SynapseUnavailable)):
        media.quarantine(main_only, ref)  # the main process has no media repository
    media.quarantine(with_media, ref)

    info = requests.get(
        f"{small.urls['media1']}/_synapse/admin/v1/media/{ref.url_path}",
        headers=_bearer(admin),
        timeout=TIMEOUT,
    )
    assert (
        info.json()["media_info"]["quarantined_by"]
        == f"@{SERVICE_LOCALPART}:{small.settings.server_name}"
    )


# --- the local router (evaluation's nginx) ------------------------------------------------------


def test_the_router_sends_media_to_the_media_worker_and_the_rest_where_the_table_says(small):
    secret = small.layout.secret("registration_shared_secret").read_text().strip()
    # Through the router: the admin registration endpoint is on no worker route (main).
    user: User = register_user(small.router_url, secret, "routed")
    router = small.router_url
    clean_bytes = unique_bytes(256 * 1024)

    infected = requests.post(
        f"{router}/_matrix/media/v3/upload", data=EICAR, headers=user.headers, timeout=TIMEOUT
    )
    clean = requests.post(
        f"{router}/_matrix/media/v3/upload", data=clean_bytes, headers=user.headers, timeout=60
    )
    synced = requests.get(
        f"{router}/_matrix/client/v3/sync", params={"timeout": 0}, headers=user.headers
    )

    # Only the media worker has a media repository: a refusal by the module proves it got there.
    assert infected.json() == {
        "errcode": "M_FORBIDDEN",
        "error": INFECTED_MESSAGE.format(signature=EICAR_SIGNATURE),
    }
    assert clean.status_code == 200, clean.text
    server_name, media_id = clean.json()["content_uri"].removeprefix("mxc://").split("/")
    served = requests.get(
        f"{router}/_matrix/client/v1/media/download/{server_name}/{media_id}",
        headers=user.headers,
        timeout=TIMEOUT,
    )
    assert served.content == clean_bytes
    assert synced.status_code == 200 and "next_batch" in synced.json()
    assert "GET /_matrix/client/v3/sync" in small.log("generic1")
    assert "GET /_matrix/client/v3/sync" not in small.log(MAIN)


@pytest.fixture
def nginx_in_front(small, tmp_path) -> Iterator[str]:
    """Debian's nginx with the production site rendered for the running small preset (TLS with
    a throwaway certificate, free loopback ports); yields its https:// base URL."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        pytest.fail("nginx is not installed: run `apt-get install -y nginx-light`")
    certificate, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj"]
        + ["/CN=127.0.0.1", "-keyout", str(key), "-out", str(certificate)],
        check=True,
        capture_output=True,
    )
    https_port = free_port()
    settings = small.settings.model_copy(
        update={
            "nginx": NginxSettings(
                bind_addresses=["127.0.0.1"],
                https_port=https_port,
                http_port=free_port(),
                federation_port=free_port(),
                certificate=certificate,
                private_key=key,
                acme_webroot=tmp_path,
            ),
            "host": HostSettings(system_root=tmp_path / "root", service_user="root"),
        }
    )
    (site,) = [
        f.content
        for f in render_all(settings, small.layout)
        if f.template == "nginx/appliance.conf.j2"
    ]
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
        "events {}\n"
        f"http {{\n access_log off;\n client_body_temp_path {tmp_path}/body;\n"
        f" proxy_temp_path {tmp_path}/proxy;\n include {tmp_path}/site.conf;\n}}\n"
    )
    checked = subprocess.run(
        [nginx, "-t", "-c", str(tmp_path / "nginx.conf")], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen(
        [nginx, "-c", str(tmp_path / "nginx.conf"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"https://127.0.0.1:{https_port}"
    try:
        wait_for(lambda: _answers(base), "nginx answering", 30)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def _answers(base: str) -> bool:
    try:
        requests.get(base + "/_matrix/client/versions", verify=False, timeout=2)
    except requests.RequestException:
        return False
    return True


def test_production_nginx_rendered_from_the_table_routes_to_the_workers(small, nginx_in_front):
    secret = small.layout.secret("registration_shared_secret").read_text().strip()
    user: User = register_user(small.urls[MAIN], secret, "nginx")

    infected = requests.post(
        f"{nginx_in_front}/_matrix/media/v3/upload",
        data=EICAR,
        headers=user.headers,
        verify=False,
        timeout=TIMEOUT,
    )
    synced = requests.get(
        f"{nginx_in_front}/_matrix/client/v3/sync",
        params={"timeout": 0, "filter": '{"room":{"timeline":{"limit":1}}}'},
        headers=user.headers,
        verify=False,
        timeout=TIMEOUT,
    )
    whoami = requests.get(
        f"{nginx_in_front}/_matrix/client/v3/account/whoami",
        headers=user.headers,
        verify=False,
        timeout=TIMEOUT,
    )
    hidden = requests.get(f"{nginx_in_front}{DOMAINS_PATH}", verify=False, timeout=TIMEOUT)

    assert infected.json()["error"] == INFECTED_MESSAGE.format(signature=EICAR_SIGNATURE)
    assert synced.status_code == 200 and "next_batch" in synced.json()
    assert whoami.json()["user_id"] == user.user_id
    assert hidden.status_code == 404  # the module's admin endpoints stay on loopback
    log = small.log("generic1")
    assert '"GET /_matrix/client/v3/sync?' in log and "filter=%7B%22room" in log


def appliance_cli(config: Path, *command: str) -> subprocess.CompletedProcess:
    """The `appliance` command behind `make up`, `make status` and `make down`."""
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", "--config", str(config), *command],
        capture_output=True,
        text=True,
        timeout=600,
    )


def redis_reply(socket_path: Path, command: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX) as connection:
        connection.settimeout(5)
        connection.connect(str(socket_path))
        connection.sendall(command)
        return connection.recv(256)


def test_make_up_with_the_small_preset_runs_every_process_and_routes_like_nginx(
    tmp_path, postgres_cluster
):
    postgres_cluster.create_database("synapse_up")
    state_dir = tmp_path / "var"
    settings = workers_settings(
        state_dir,
        database="synapse_up",
        pg_port=postgres_cluster.port,
        redis=tmp_path / "redis.sock",
        clamd_port=free_port(),  # its own clamd, as `make up` runs one
    )
    config = tmp_path / "appliance.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    layout = Layout.from_settings(settings, state_dir)
    router = settings.synapse.listen.url
    processes = ["redis", "synapse", "synapse-generic1", "synapse-media1", "router"]
    clean_bytes = unique_bytes(64 * 1024)
    try:
        up = appliance_cli(config, "up")
        assert up.returncode == 0, up.stdout + up.stderr
        status = appliance_cli(config, "status")
        pids = {
            line.split()[0]: int(line.split()[3])
            for line in status.stdout.splitlines()
            if " up " in line and " pid " in line
        }
        memory = {name: psutil.Process(pid).memory_info().rss >> 20 for name, pid in pids.items()}
        redis_inet = [c for c in psutil.Process(pids["redis"]).net_connections("inet") if c.laddr]
        unauthenticated = redis_reply(settings.synapse.redis.path, b"PING\r\n")

        # Through the router, as a client does: Tchap's registration (mail, link, register),
        # an upload scanned on the media worker, its download, the content scanner's verdict.
        client = MatrixClient(router, layout.mail_dir)
        account = client.register_account(f"routed.{secrets.token_hex(3)}@ac-paris.fr")
        headers = _bearer(account.access_token)
        uploaded = requests.post(
            f"{router}/_matrix/media/v3/upload", data=clean_bytes, headers=headers, timeout=60
        )
        server_name, media_id = uploaded.json()["content_uri"].removeprefix("mxc://").split("/")
        downloaded = requests.get(
            f"{router}/_matrix/client/v1/media/download/{server_name}/{media_id}",
            headers=headers,
            timeout=TIMEOUT,
        )
        verdict = requests.get(
            f"{settings.content_scanner.listen.url}/_matrix/media_proxy/unstable/scan/"
            f"{server_name}/{media_id}",
            headers=headers,
            timeout=60,
        )
        again = appliance_cli(config, "up")
        pids_again = {
            line.split()[0]: int(line.split()[3])
            for line in appliance_cli(config, "status").stdout.splitlines()
            if " pid " in line
        }
    finally:
        down = appliance_cli(config, "down")

    assert status.returncode == 0, status.stdout
    assert set(processes) <= set(pids), status.stdout
    assert redis_inet == []  # a unix socket only, never a TCP port (Debian's is 6379)
    assert unauthenticated.startswith(b"-NOAUTH"), unauthenticated
    assert layout.secret("redis_password").stat().st_mode & 0o777 == 0o600
    assert layout.redis_acl.stat().st_mode & 0o777 == 0o600
    assert layout.secret("redis_password").read_text().strip() not in layout.redis_acl.read_text()
    assert uploaded.status_code == 200, uploaded.text
    assert downloaded.content == clean_bytes
    assert verdict.json()["clean"] is True, verdict.text
    served = {
        name: layout.logfile(f"synapse-{name}").read_text(errors="replace")
        for name in ("generic1", "media1")
    }
    assert "POST /_matrix/client/v3/register" in served["generic1"]
    assert "POST /_matrix/media/v3/upload" in served["media1"]
    assert f"GET /_matrix/client/v1/media/download/{server_name}/{media_id}" in served["media1"]
    assert "already up: nothing to repair" in again.stdout, again.stdout
    assert pids_again == pids  # the second `up` restarted nothing
    for name in processes:
        assert name in down.stdout.split("stopped: ")[1]
    assert not any(psutil.pid_exists(pid) for pid in pids.values())
    print("resident memory (MiB) per process:", memory)


def test_up_refuses_before_starting_anything_when_postgresql_does_not_answer(tmp_path):
    nobody = free_port()  # nothing listens there
    settings = workers_settings(
        tmp_path / "var",
        database="synapse",
        pg_port=nobody,
        redis=tmp_path / "redis.sock",
        clamd_port=free_port(),
    )
    running = EvaluationAppliance(settings, Layout.from_settings(settings, tmp_path / "var"))

    with pytest.raises(SettingsError) as caught:
        running.up()

    (problem,) = [p for p in caught.value.problems if p.startswith("synapse.database")]
    assert problem.startswith(
        f"synapse.database: cannot connect to PostgreSQL (database synapse as synapse on "
        f"127.0.0.1:{nobody}): "
    )
    assert "Connection refused" in problem or "connection refused" in problem.lower()
    assert not (tmp_path / "var").exists()  # nothing created, nothing started
    assert all(pid is None for _, pid, _ in running.status())


# --- start order --------------------------------------------------------------------------------


def test_workers_started_before_main_fail_closed_then_recover_logging_once(
    tmp_path, postgres_cluster, own_redis, appliance
):
    postgres_cluster.create_database("synapse_early")
    settings = workers_settings(
        tmp_path,
        database="synapse_early",
        pg_port=postgres_cluster.port,
        redis=own_redis.socket,
        clamd_port=appliance.settings.clamav.listen.port,
    )
    layout = Layout.from_settings(settings, tmp_path)
    own_redis.share_with(layout)
    running = WorkersAppliance(settings, layout, workers_first=True)
    ensure_secrets(layout)
    write_all(render_all(settings, layout))
    _prepare_synapse_schema(layout)  # Synapse's own tables, not the module's
    worker = running.direct_client("generic1")
    address = "early@ac-paris.fr"

    specs = running.workers
    try:
        for spec in specs:
            reason = wait_until_ready(spec, start(spec))
            assert reason is None, reason
        closed = worker.identity_info(address)
        main = running.main
        assert wait_until_ready(main, start(main)) is None
        recovered = wait_for(
            lambda: worker.identity_info(address).status_code == 200, "the worker recovering", 60
        )
    finally:
        for spec in [running.main, *reversed(specs)]:
            stop(spec)

    assert closed.status_code == 503 and closed.json()["errcode"] == "M_UNKNOWN", closed.text
    for process in ("generic1", "media1"):
        # What the worker logged while it ran (its shutdown is Synapse's own business).
        log = running.log(process).split("Received SIGTERM")[0]
        assert log.count("cannot read the allowlist") == 1, log[-3000:]
        assert log.count("module tables not there yet: appliance_identity_key") == 1, log[-3000:]
        assert "Traceback" not in log, log[-3000:]
    print(f"worker recovered {recovered:.2f} s after the main process was ready")


def _prepare_synapse_schema(layout: Layout) -> None:
    """Create Synapse's schema with Synapse's own script, without loading the module."""
    config = yaml.safe_load(layout.homeserver_config.read_text())
    del config["modules"]
    database_only = layout.synapse_dir / "without-module.yaml"
    database_only.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [sys.executable, "-m", "synapse._scripts.update_synapse_database"]
        + ["--database-config", str(database_only)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
