# SPDX-License-Identifier: AGPL-3.0-or-later
"""Synapse's processes on several hosts (synapse.workers.hosts): what each host renders.

Three hosts as the Ansible groups place them: main (nginx, console), a generic worker, and
the media worker with PostgreSQL and Redis. Each host renders from its own appliance.yaml (the
same but for host.private_address); the firewall opens replication, the workers, Redis and
PostgreSQL to the other Synapse hosts only, pg_hba lets in only those hosts, and each host's
target starts only its own processes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from appliance.config.layout import Layout
from appliance.config.render import placement, render_all
from appliance.config.settings import SettingsError, parse_settings

MAIN, WORKER, DATA = "10.0.0.1", "10.0.0.2", "10.0.0.3"
POSTGRESQL_PORT, REDIS_PORT = 5432, 6380


def several_hosts(tmp_path: Path, private_address: str, **changes) -> dict:
    data = {
        "mode": "production",
        "public_baseurl": "https://chat.example.org/",
        "clamav": {"signatures": "freshclam"},
        "host": {
            "system_root": str(tmp_path / private_address),
            "service_user": "synapse",
            "private_address": private_address,
        },
        "synapse": {
            "database": {
                "engine": "postgresql",
                "host": DATA,
                "port": POSTGRESQL_PORT,
                "password": "from-the-vault",
            },
            "workers": {
                "preset": "small",
                "hosts": {"main": MAIN, "workers": [WORKER], "media": [DATA]},
            },
            "redis": {"host": DATA, "port": REDIS_PORT},
        },
        "paths": {"state_dir": str(tmp_path / private_address / "var")},
    }
    for key, value in changes.items():
        section, _, name = key.partition("__")
        data[section] = {**data[section], name: value}
    return data


def rendered(tmp_path: Path, private_address: str) -> tuple[dict[str, str], dict]:
    settings = parse_settings(several_hosts(tmp_path, private_address), "test settings")
    layout = Layout.from_settings(settings, tmp_path)
    files = {
        str(f.path.relative_to(tmp_path / private_address)): f.content
        for f in render_all(settings, layout)
    }
    return files, placement(settings, layout)


def peer_rule(nftables: str) -> str:
    lines = [line.strip() for line in nftables.splitlines() if line.strip().startswith("ip saddr")]
    assert len(lines) == 1, nftables
    return lines[0]


def test_each_process_listens_on_its_hosts_private_address_and_is_reached_there(tmp_path):
    files, _ = rendered(tmp_path, WORKER)
    homeserver = yaml.safe_load(files["var/synapse/homeserver.yaml"])
    hosts = {name: entry["host"] for name, entry in homeserver["instance_map"].items()}
    assert hosts == {"main": MAIN, "generic1": WORKER, "media1": DATA}
    replication = [
        listener
        for listener in homeserver["listeners"]
        if listener["resources"][0]["names"] == ["replication"]
    ]
    assert replication[0]["bind_addresses"] == [MAIN]
    for name, address in (("generic1", WORKER), ("media1", DATA)):
        worker = yaml.safe_load(files[f"var/synapse/workers/{name}.yaml"])
        assert {tuple(listener["bind_addresses"]) for listener in worker["worker_listeners"]} == {
            (address,)
        }
    assert homeserver["redis"]["host"] == DATA and homeserver["database"]["args"]["host"] == DATA


def test_nginx_on_the_main_host_reaches_the_workers_on_their_hosts(tmp_path):
    files, _ = rendered(tmp_path, MAIN)
    nginx = files["etc/nginx/conf.d/appliance.conf"]
    servers = {line.strip() for line in nginx.splitlines() if line.strip().startswith("server 10.")}
    assert servers == {f"server {WORKER}:8100;", f"server {DATA}:8102;"}
    # The content scanner fetches media from the media worker's host.
    scanner = json.loads(files["var/content-scanner/content-scanner.json"])
    assert scanner["synapse_url"] == f"http://{DATA}:8102"


def test_the_firewall_opens_what_each_host_serves_to_the_other_synapse_hosts_only(tmp_path):
    main_files, _ = rendered(tmp_path, MAIN)
    worker_files, _ = rendered(tmp_path, WORKER)
    data_files, _ = rendered(tmp_path, DATA)
    # Main: its replication listener. The worker: its HTTP (nginx) and replication listeners.
    assert peer_rule(main_files["etc/nftables.conf"]) == (
        f"ip saddr {{ {WORKER}, {DATA} }} tcp dport {{ 9093 }} accept"
    )
    assert peer_rule(worker_files["etc/nftables.conf"]) == (
        f"ip saddr {{ {MAIN}, {DATA} }} tcp dport {{ 8100, 8101 }} accept"
    )
    # The data host: the media worker's two listeners, PostgreSQL and Redis.
    assert peer_rule(data_files["etc/nftables.conf"]) == (
        f"ip saddr {{ {MAIN}, {WORKER} }} "
        f"tcp dport {{ {POSTGRESQL_PORT}, {REDIS_PORT}, 8102, 8103 }} accept"
    )


def test_one_host_renders_no_peer_rule(tmp_path):
    data = several_hosts(tmp_path, "root")
    del data["host"]["private_address"]
    data["synapse"] = {
        "database": {"engine": "postgresql"},
        "workers": {"preset": "small"},
        "redis": {"host": "127.0.0.1", "port": REDIS_PORT},
    }
    settings = parse_settings(data, "test settings")
    layout = Layout.from_settings(settings, tmp_path)
    root = tmp_path / "root"
    files = {
        str(f.path.relative_to(root)): f.content
        for f in render_all(settings, layout)
        if f.path.is_relative_to(root)
    }
    assert "saddr" not in files["etc/nftables.conf"]
    assert "hba_file" not in files["etc/postgresql/15/main/conf.d/appliance.conf"]
    assert "etc/postgresql/15/main/appliance_hba.conf" not in files
    # One host runs Redis on loopback, and every process.
    assert "bind 127.0.0.1\n" in files["etc/appliance/redis.conf"]
    where = placement(settings, layout)
    assert where["main"] and where["redis"] and where["postgresql"]
    assert [w["name"] for w in where["workers"]] == ["generic1", "media1"]


def test_postgresql_lets_in_only_the_synapse_hosts_with_their_password(tmp_path):
    files, where = rendered(tmp_path, DATA)
    conf = files["etc/postgresql/15/main/conf.d/appliance.conf"]
    assert f"listen_addresses = '{DATA}'" in conf
    assert "hba_file = '/etc/postgresql/15/main/appliance_hba.conf'" in conf
    rules = [
        line.split()
        for line in files["etc/postgresql/15/main/appliance_hba.conf"].splitlines()
        if line and not line.startswith("#")
    ]
    assert rules == [
        ["local", "all", "postgres", "peer"],
        ["local", "all", "all", "peer"],
        ["host", "synapse", "synapse", f"{MAIN}/32", "scram-sha-256"],
        ["host", "synapse", "synapse", f"{WORKER}/32", "scram-sha-256"],
        ["host", "synapse", "synapse", f"{DATA}/32", "scram-sha-256"],
    ]
    assert where["postgresql"] and where["redis"]


def test_each_host_starts_only_its_own_processes(tmp_path):
    for address, main, workers in (
        (MAIN, True, []),
        (WORKER, False, ["generic1"]),
        (DATA, False, ["media1"]),
    ):
        files, where = rendered(tmp_path, address)
        wants = next(
            line
            for line in files["etc/systemd/system/appliance-synapse.target"].splitlines()
            if line.startswith("Wants=")
        )
        expected = (["appliance-synapse.service"] if main else []) + [
            f"appliance-synapse-worker@{name}.service" for name in workers
        ]
        assert wants.split("=", 1)[1].split() == expected
        assert (where["main"], [w["name"] for w in where["workers"]]) == (main, workers)
        # Redis and PostgreSQL run on the data host only; Redis's own unit is rendered there.
        assert where["redis"] is where["postgresql"] is (address == DATA)
        assert ("etc/systemd/system/appliance-redis.service" in files) is (address == DATA)


def test_the_registration_secret_is_never_shared_with_the_other_hosts(tmp_path):
    _, where = rendered(tmp_path, MAIN)
    names = [Path(path).name for path in where["shared_secrets"]]
    assert "registration_shared_secret" not in names
    assert {"synapse.signing.key", "worker_replication_secret", "redis_password"} <= set(names)


@pytest.mark.parametrize(
    "changes, problem",
    [
        (
            {"host__private_address": None},
            "host.private_address: needed with synapse.workers.hosts",
        ),
        (
            {"host__private_address": "10.0.0.9"},
            "host.private_address: 10.0.0.9 runs nothing",
        ),
    ],
)
def test_bad_several_hosts_settings_are_refused_with_the_key(tmp_path, changes, problem):
    with pytest.raises(SettingsError) as caught:
        parse_settings(several_hosts(tmp_path, MAIN, **changes), "test settings")
    assert any(line.startswith(problem) for line in caught.value.problems), caught.value.problems


@pytest.mark.parametrize(
    "database, problem",
    [
        (
            {"engine": "postgresql", "password": "x"},
            "synapse.database.host: /var/run/postgresql is not an IP",
        ),
        (
            {"engine": "postgresql", "host": DATA},
            "synapse.database.password: needed with synapse.workers.hosts",
        ),
    ],
)
def test_several_hosts_need_postgresql_over_the_network_with_a_password(
    tmp_path, database, problem
):
    data = several_hosts(tmp_path, MAIN)
    data["synapse"]["database"] = database
    with pytest.raises(SettingsError) as caught:
        parse_settings(data, "test settings")
    assert any(line.startswith(problem) for line in caught.value.problems), caught.value.problems


def test_a_host_gets_only_the_secrets_it_needs_from_the_main_host(tmp_path):
    _, main = rendered(tmp_path, MAIN)
    _, worker = rendered(tmp_path, WORKER)
    signing_key = next(path for path in main["shared_secrets"] if path.endswith(".signing.key"))
    assert main["secrets_needed"] == []  # the main host makes them
    # (each test host has its own root: compared by name)
    assert [Path(p).name for p in worker["secrets_needed"]] == [
        Path(p).name for p in main["shared_secrets"]
    ]
    assert not [path for path in main["shared_secrets"] if "registration" in path]
    # A host that runs Redis and no Synapse process: its password, not the server's keys.
    redis_only = "10.0.0.4"
    settings = parse_settings(
        several_hosts(tmp_path, redis_only, synapse__redis={"host": redis_only, "port": 6380}),
        "test settings",
    )
    where = placement(settings, Layout.from_settings(settings, tmp_path))
    assert where["redis"] and not where["main"] and where["workers"] == []
    assert [Path(path).name for path in where["secrets_needed"]] == ["redis_password"]
    assert Path(signing_key).name not in [Path(p).name for p in where["secrets_needed"]]
