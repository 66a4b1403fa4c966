# SPDX-License-Identifier: AGPL-3.0-or-later
"""The console's forms at the edges of its policy values (admin_console/policy.py): one short of
a limit is refused with its reason and nothing done, the limit itself is accepted. Also the one
place those values must agree with outside the console: Synapse's password policy."""

from __future__ import annotations

from urllib.parse import quote

import yaml
from console_helpers import Console, login

from admin_console import db
from admin_console.policy import (
    MATRIX_PASSWORD_MIN_LENGTH,
    OPERATOR_PASSWORD_MIN_LENGTH,
    OPERATOR_USERNAME_MAX_LENGTH,
    PASSWORD_MAX_LENGTH,
)
from appliance.config.layout import Layout
from appliance.config.render import render_all
from appliance.config.settings import parse_settings


def password_of(length: int) -> str:
    """A password with every character class, exactly length characters long."""
    return ("Aa1" + "x" * length)[:length]


def operators(app) -> set[str]:
    with db.connect(app.config["DATABASE"]) as connection:
        return {row[0] for row in connection.execute("SELECT username FROM operators")}


def audit_actions(app) -> list[tuple[str, str, int]]:
    with db.connect(app.config["DATABASE"]) as connection:
        rows = connection.execute("SELECT action, target, ok FROM audit_log ORDER BY id")
        return [tuple(row) for row in rows]


def add_operator(console: Console, name: str, password: str):
    return console.post("/operators/", username=name, password=password, confirm=password)


def test_an_operator_password_one_short_of_the_minimum_is_refused(app, console):
    short = password_of(OPERATOR_PASSWORD_MIN_LENGTH - 1)
    refused = add_operator(console, "francoise", short)
    assert refused.status_code == 400
    limits = f"between {OPERATOR_PASSWORD_MIN_LENGTH} and {PASSWORD_MAX_LENGTH} characters"
    assert limits in refused.get_data(as_text=True)
    assert "francoise" not in operators(app)

    exact = password_of(OPERATOR_PASSWORD_MIN_LENGTH)
    assert add_operator(console, "francoise", exact).status_code == 302
    assert login(app.test_client(), "francoise", exact).status_code == 302


def test_the_longest_operator_name_the_form_accepts_can_log_in(app, console):
    longest = "o" * OPERATOR_USERNAME_MAX_LENGTH
    password = password_of(OPERATOR_PASSWORD_MIN_LENGTH)
    assert add_operator(console, longest + "o", password).status_code == 400
    assert add_operator(console, longest, password).status_code == 302
    assert login(app.test_client(), longest, password).status_code == 302


def test_an_operator_name_outside_the_allowed_characters_is_refused(app, console):
    password = password_of(OPERATOR_PASSWORD_MIN_LENGTH)
    for name in ("Admin", "évelyne", "a b", "x;drop", "<script>"):
        refused = add_operator(console, name, password)
        assert refused.status_code == 400, name
        assert "lower-case letters, digits" in refused.get_data(as_text=True)
    assert operators(app) == {"admin"}


def test_a_matrix_password_one_short_of_synapses_minimum_is_refused_before_synapse(app, console):
    user_id = "@agent:fast.test"
    path = f"/users/{quote(user_id)}/reactivate"
    short = console.post(path, password=password_of(MATRIX_PASSWORD_MIN_LENGTH - 1))
    assert short.status_code == 302
    page = console.client.get(short.headers["Location"]).get_data(as_text=True)
    assert "Not reactivated:" in page
    assert not any(action == "user.reactivate" for action, _, _ in audit_actions(app))

    # The limit itself passes the form and goes to Synapse (here unreachable: a failure).
    console.post(path, password=password_of(MATRIX_PASSWORD_MIN_LENGTH))
    assert ("user.reactivate", user_id, 0) in audit_actions(app)


def test_the_console_and_synapse_agree_on_the_matrix_password_policy(tmp_path):
    settings = parse_settings({"paths": {"state_dir": str(tmp_path)}}, "test")
    files = render_all(settings, Layout.from_settings(settings, tmp_path))
    homeserver = next(f for f in files if f.template.startswith("synapse/homeserver.yaml"))
    policy = yaml.safe_load(homeserver.content)["password_config"]["policy"]
    assert policy["enabled"] and policy["minimum_length"] == MATRIX_PASSWORD_MIN_LENGTH
    # The console's MixedCharacters checks the same classes.
    assert policy["require_digit"] and policy["require_lowercase"] and policy["require_uppercase"]
    assert not policy.get("require_symbol")
