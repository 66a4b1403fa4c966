# SPDX-License-Identifier: AGPL-3.0-or-later
"""Prometheus metrics: an appliance started with `metrics.enabled` serves, on its loopback
metrics listener, Synapse's own metrics and the appliance's counters in the Prometheus text
format; each counter moves when the real thing happens (an agent and an external registered
through the mail flow, an email invitation, a refused address, a clean and an EICAR upload).
The production nginx site serves them behind basic authentication (rendered, not run)."""

from __future__ import annotations

import re

import pytest
import requests
from console_helpers import register_external, unique
from harness import evaluation_settings, free_port
from matrix_helpers import Person, client_for
from matrix_media_helpers import EICAR, User, upload, upload_ok
from prometheus_client.parser import text_string_to_metric_families

from appliance.config.layout import Layout
from appliance.config.render import render_all
from appliance.config.settings import SettingsError, parse_settings
from appliance.evaluation.lifecycle import EvaluationAppliance


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> EvaluationAppliance:
    state_dir = tmp_path_factory.mktemp("metrics")
    settings = evaluation_settings(
        state_dir, metrics={"enabled": True, "listen": {"port": free_port()}}
    )
    running = EvaluationAppliance(settings, Layout.from_settings(settings, state_dir))
    running.up()
    yield running
    running.down()


def scrape(appliance) -> dict[tuple[str, tuple], float]:
    """Every sample the metrics listener serves: (name, sorted labels) -> value."""
    url = f"{appliance.settings.metrics.listen.url}/_synapse/metrics"
    response = requests.get(url, timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_synapse_and_the_appliance_counters_are_served_on_loopback(measured):
    before = scrape(measured)
    names = {name for name, _ in before}
    assert "synapse_http_server_requests_received_total" in names or any(
        name.startswith("synapse_") for name in names
    )
    assert "process_cpu_seconds_total" in names

    client = client_for(measured)
    tag = unique("metrics")
    register_external(measured, tag)  # an agent, an invitation, an external
    refused = client.request_token("register", f"{tag}@not-allowed.example")
    assert refused.status_code == 403
    agent = Person.register(client, f"{tag}-uploader@ac-paris.fr")
    user = User(agent.user_id, agent.token)
    upload_ok(measured.settings.synapse.listen.url, user, b"clean " + tag.encode())
    assert upload(measured.settings.synapse.listen.url, user, EICAR).status_code == 403

    after = scrape(measured)

    def moved(name: str, **labels) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("appliance_registrations_total", kind="agent") == 2
    assert moved("appliance_registrations_total", kind="external") == 1
    assert moved("appliance_invitations_total") == 1
    assert moved("appliance_refusals_total", reason="email_not_allowed") == 1
    assert moved("appliance_refusals_total", reason="upload_infected") == 1
    assert moved("appliance_scans_total", result="clean", source="clamd") >= 1
    assert moved("appliance_scans_total", result="infected", source="clamd") == 1
    assert moved("appliance_quarantine_files") == 1


def test_the_metrics_listener_is_loopback_only_and_named_in_errors(tmp_path):
    with pytest.raises(SettingsError) as refused:
        parse_settings(
            {"metrics": {"enabled": True, "listen": {"bind_address": "0.0.0.0", "port": 9000}}}, "t"
        )
    assert "metrics.listen" in str(refused.value) and "loopback" in str(refused.value)
    with pytest.raises(SettingsError) as clash:
        parse_settings({"metrics": {"enabled": True, "listen": {"port": 8008}}}, "t")
    assert "metrics.listen.port" in str(clash.value)


PRODUCTION = {
    "mode": "production",
    "server_name": "ac-paris.fr",
    "public_baseurl": "https://matrix.ac-paris.fr/",
    "clamav": {"signatures": "freshclam"},
    "synapse": {"database": {"engine": "postgresql", "password": "db-pass-123"}},
    "mail": {"smtp_host": "smtp.ac-paris.fr", "smtp_port": 587, "run_local_sink": False},
}


def nginx_site(tmp_path, metrics: dict) -> str:
    host = {"system_root": str(tmp_path), "service_user": "appliance"}
    settings = parse_settings({**PRODUCTION, "host": host, "metrics": metrics}, "test")
    files = render_all(settings, Layout.from_settings(settings, tmp_path))
    (site,) = [file.content for file in files if file.template == "nginx/appliance.conf.j2"]
    return site


def test_production_serves_metrics_only_behind_basic_authentication(tmp_path):
    site = nginx_site(
        tmp_path, {"enabled": True, "htpasswd_file": "/etc/appliance/metrics.htpasswd"}
    )
    block = re.search(r"location = /metrics/synapse \{(.*?)\}", site, re.S).group(1)
    assert 'auth_basic "metrics";' in block
    assert "auth_basic_user_file /etc/appliance/metrics.htpasswd;" in block
    assert "proxy_pass http://127.0.0.1:9000/_synapse/metrics;" in block
    assert "/metrics" not in nginx_site(tmp_path / "off", {"enabled": True})
    assert "/metrics" not in nginx_site(tmp_path / "none", {})
