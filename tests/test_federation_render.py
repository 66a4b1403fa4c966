# SPDX-License-Identifier: AGPL-3.0-or-later
"""Federation's settings, rendered and loaded by Synapse's own config parser (and the module's).

closed (production's default) lists the peers in Synapse's federation_domain_whitelist, off
(evaluation's default) lists nobody and serves no federation listener, open needs an explicit
acknowledgement.  Every problem is refused with the key's path.
"""

from __future__ import annotations

import json
import socket

import pytest
from federation_fixtures import CertificateAuthority
from synapse.config.homeserver import HomeServerConfig

from appliance.config.layout import Layout
from appliance.config.preflight import check_ports
from appliance.config.render import render_all, write_all
from appliance.config.secrets_store import ensure_secrets
from appliance.config.settings import SettingsError, parse_settings
from appliance.synapse_module.federation.peers import FederationConfig, Peer

PRODUCTION = {
    "mode": "production",
    "registration": {"allowed_domains": ["ac-paris.fr"]},
    "server_name": "ac-paris.fr",
    "public_baseurl": "https://matrix.ac-paris.fr/",
    "clamav": {"signatures": "freshclam"},
    "synapse": {"database": {"engine": "postgresql"}},
    "mail": {"smtp_host": "smtp.ac-paris.fr", "run_local_sink": False},
}
PEERS = [
    {
        "server_name": "ac-lyon.fr",
        "base_url": "https://matrix.ac-lyon.fr",
        "role": "agents",
        "domains": ["ac-lyon.fr", "*.Lyon.gouv.fr"],
    },
    {
        "server_name": "e.example.org:8448",
        "base_url": "https://e.example.org/",
        "role": "externals",
    },
]


def render(tmp_path, data: dict, *, system_root: bool = False):
    """Synapse's parsed config, and every file's content (with the host's system files, which
    are only rendered, never written, when system_root is asked)."""
    data = {**data, "paths": {"state_dir": str(tmp_path)}}
    settings = parse_settings(data, "test")
    layout = Layout.from_settings(settings, tmp_path)
    ensure_secrets(layout)
    files = render_all(settings, layout)
    write_all(files)
    config = HomeServerConfig.load_config("test", ["-c", str(layout.homeserver_config)])
    if system_root:
        host = {"system_root": str(tmp_path / "root"), "service_user": "synapse"}
        settings = parse_settings({**data, "host": host}, "test")
        files = render_all(settings, Layout.from_settings(settings, tmp_path))
    return config, {file.template: file.content for file in files}


def resources(listener) -> set[str]:
    return {name for resource in listener.http_options.resources for name in resource.names}


def module_federation(config: HomeServerConfig) -> FederationConfig:
    ((module, module_config),) = config.modules.loaded_modules
    assert module.__name__ == "ApplianceModule"
    return module_config.federation


def problems(data: dict) -> list[str]:
    with pytest.raises(SettingsError) as refused:
        parse_settings(data, "test")
    return refused.value.problems


def test_evaluation_defaults_to_no_federation_at_all(tmp_path):
    config, _ = render(tmp_path, {})
    # An empty allowlist: Synapse neither accepts nor sends any federation request.
    assert config.federation.federation_domain_whitelist == {}
    assert not config.federation.is_domain_allowed_according_to_federation_whitelist("x.org")
    assert [resources(listener) for listener in config.server.listeners] == [{"client"}]
    assert module_federation(config) == FederationConfig(mode="off", peers=())


def test_production_defaults_to_closed_federation_with_the_listed_peers(tmp_path):
    data = {**PRODUCTION, "federation": {"peers": PEERS}}
    config, files = render(tmp_path, data, system_root=True)
    assert config.federation.federation_domain_whitelist == {
        "ac-lyon.fr": True,
        "e.example.org:8448": True,
    }
    assert not config.federation.is_domain_allowed_according_to_federation_whitelist("matrix.org")
    assert config.key.key_servers == []
    assert config.server.allow_public_rooms_over_federation
    (listener,) = config.server.listeners
    assert resources(listener) == {"client", "federation"}
    assert module_federation(config) == FederationConfig(
        mode="closed",
        peers=(
            Peer(
                "ac-lyon.fr",
                "agents",
                "https://matrix.ac-lyon.fr/",
                ("ac-lyon.fr", "*.lyon.gouv.fr"),
            ),
            Peer("e.example.org:8448", "externals", "https://e.example.org/"),
        ),
    )
    console = json.loads(files["console/console.json.j2"])
    assert console["FEDERATION_MODE"] == "closed"
    assert [(p["server_name"], p["role"]) for p in console["FEDERATION_PEERS"]] == [
        ("ac-lyon.fr", "agents"),
        ("e.example.org:8448", "externals"),
    ]
    assert "listen 0.0.0.0:8448 ssl http2" in files["nginx/appliance.conf.j2"]
    assert ", 8448 } accept" in files["nftables/nftables.conf.j2"]
    # Invitations carry the room's access rule to other appliances.
    assert "im.vector.room.access_rules" in config.api.room_prejoin_state.types


def test_production_with_federation_off_serves_no_federation_port(tmp_path):
    data = {**PRODUCTION, "federation": {"mode": "off", "peers": PEERS}}
    config, files = render(tmp_path, data, system_root=True)
    assert config.federation.federation_domain_whitelist == {}
    (listener,) = config.server.listeners
    assert resources(listener) == {"client"}
    assert "listen 0.0.0.0:8448" not in files["nginx/appliance.conf.j2"]
    assert "/.well-known/matrix/server" not in files["nginx/appliance.conf.j2"]
    assert "8448" not in files["nftables/nftables.conf.j2"]
    assert module_federation(config).mode == "off"


def test_open_federation_only_when_the_operator_insists(tmp_path):
    assert problems({**PRODUCTION, "federation": {"mode": "open"}}) == [
        "federation.mode: open federates with every Matrix server, whose users no rule here "
        "can tell apart; set federation.i_understand_open_federation: true to insist"
    ]
    data = {**PRODUCTION, "federation": {"mode": "open", "i_understand_open_federation": True}}
    config, _ = render(tmp_path, data)
    assert config.federation.federation_domain_whitelist is None
    assert module_federation(config).mode == "open"


def test_evaluation_federation_is_served_by_synapse_over_tls_with_the_networks_ca(tmp_path):
    ca = CertificateAuthority.create(tmp_path)
    certificate, key = ca.issue("127.0.0.2", tmp_path)
    data = {
        "server_name": "127.0.0.2:8448",
        "federation": {
            "mode": "closed",
            "peers": [{"server_name": "127.0.0.3:8448", "base_url": "http://x/", "role": "agents"}],
            "ca_certificates": [str(ca.certificate_file)],
            "listen": {"bind_address": "127.0.0.2", "port": 8448},
            "certificate": str(certificate),
            "private_key": str(key),
        },
    }
    config, _ = render(tmp_path, data)
    client, federation = config.server.listeners
    assert resources(client) == {"client"} and not client.is_tls()
    assert resources(federation) == {"federation"} and federation.is_tls()
    assert federation.bind_addresses == ["127.0.0.2"] and federation.port == 8448
    assert config.tls.federation_ca_trust_root is not None  # the test CA, loaded
    assert config.federation.federation_domain_whitelist == {"127.0.0.3:8448": True}


@pytest.mark.parametrize(
    "federation, expected",
    [
        (
            {"peers": [{"server_name": "ac-lyon.fr", "base_url": "ftp://x", "role": "agents"}]},
            "federation.peers.0.base_url: must start with http:// or https://",
        ),
        (
            {"peers": [{"server_name": "ac-lyon.fr", "base_url": "https://x", "role": "admins"}]},
            "federation.peers.0.role: Input should be 'agents' or 'externals'",
        ),
        (
            {
                "peers": [
                    {"server_name": "ac-lyon.fr:99999", "base_url": "https://x", "role": "agents"}
                ]
            },
            "federation.peers.0.server_name: 'ac-lyon.fr:99999': '99999' is not a port",
        ),
        (
            {"peers": [PEERS[0], PEERS[0]]},
            "federation.peers: ac-lyon.fr is listed twice",
        ),
        (
            {"peers": [{"server_name": "ac-paris.fr", "base_url": "https://x", "role": "agents"}]},
            "federation.peers.0.server_name: this server itself",
        ),
        (
            {"peers": [{**PEERS[1], "domains": ["partner.example"]}]},
            "federation.peers.0.domains: the externals' server owns no domain",
        ),
        (
            {"peers": [{**PEERS[0], "domains": ["ac-paris.fr"]}]},
            "federation.peers.0.domains: ac-paris.fr is this server's own "
            "(registration.allowed_domains): an address belongs to one server",
        ),
        (
            {"peers": [{**PEERS[0], "domains": ["*gouv.fr"]}]},
            "federation.peers.0.domains.0: invalid allowlist entry '*gouv.fr': a wildcard must "
            "be followed by a dot, as in '*.gouv.fr' (which admits the subdomains of gouv.fr)",
        ),
        ({"mode": "shut"}, "federation.mode: Input should be 'off', 'closed' or 'open'"),
        ({"peer": []}, "federation.peer: unknown key"),
    ],
)
def test_bad_federation_settings_are_refused_with_their_key(federation, expected):
    assert problems({**PRODUCTION, "federation": federation}) == [expected]


def test_evaluation_federation_needs_a_certificate_and_loopback():
    assert problems({"federation": {"mode": "closed"}}) == [
        "federation.certificate: needed in evaluation mode with federation "
        "(Synapse serves other servers over TLS itself)"
    ]
    tls = {"certificate": "/c", "private_key": "/k"}
    listen = {"bind_address": "10.0.0.1", "port": 8448}
    assert problems({"federation": {"mode": "closed", "listen": listen, **tls}}) == [
        "federation.listen.bind_address: evaluation mode listens on loopback only "
        "(nginx is the public entry), not 10.0.0.1"
    ]


def test_production_refuses_an_ip_literal_server_name():
    assert problems({**PRODUCTION, "server_name": "192.0.2.1:8448"}) == [
        "server_name: production mode needs a DNS name"
    ]


def test_a_taken_federation_port_stops_make_up_before_anything_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        listen = {"bind_address": "127.0.0.1", "port": port}
        tls = {"certificate": "/c", "private_key": "/k"}
        settings = parse_settings({"federation": {"mode": "closed", "listen": listen, **tls}}, "t")
        problem = (
            f"federation.listen.port: port {port} on 127.0.0.1 is already in use by another program"
        )
        assert problem in check_ports(settings, {"synapse"})
        assert problem not in check_ports(parse_settings({}, "t"), {"synapse"})
