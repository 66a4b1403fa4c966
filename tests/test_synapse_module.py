"""The Synapse module: validated config, and loaded by the real Synapse with one version line."""

from __future__ import annotations

import pytest
from synapse.config import ConfigError

from appliance import __version__
from appliance.synapse_module import ApplianceModule


def test_config_is_parsed_and_normalised():
    config = ApplianceModule.parse_config(
        {"allowed_domains": ["AC-Paris.FR", "*.gouv.fr", "ac-paris.fr"], "clamd": {"port": 3311}}
    )
    assert config.allowed_domains == ("ac-paris.fr", "*.gouv.fr")
    assert config.clamd.port == 3311 and config.clamd.host == "127.0.0.1"


@pytest.mark.parametrize(
    "config, path, message",
    [
        ({"alowed_domains": []}, ("alowed_domains",), "unknown key"),
        ({"allowed_domains": "ac-paris.fr"}, ("allowed_domains",), "must be a list"),
        ({"allowed_domains": ["ok.fr", "not a domain"]}, ("allowed_domains", "1"), ""),
        ({"clamd": {"port": "3310"}}, ("clamd", "port"), "port number"),
        ({"clamd": {"timeout_seconds": 0}}, ("clamd", "timeout_seconds"), "positive"),
        ({"clamd": {"hots": "x"}}, ("clamd", "hots"), "unknown key"),
    ],
)
def test_bad_config_names_the_key(config, path, message):
    with pytest.raises(ConfigError) as caught:
        ApplianceModule.parse_config(config)
    assert tuple(caught.value.path) == path
    assert message in caught.value.msg


def test_running_synapse_loaded_the_module(appliance):
    log = appliance.layout.logfile("synapse").read_text()
    assert f"appliance module {__version__} loaded: 2 allowed domain entries" in log
