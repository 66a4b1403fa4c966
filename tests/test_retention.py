# SPDX-License-Identifier: AGPL-3.0-or-later
"""Retention: the settings' bounds, what Synapse makes of the rendered policy, and the policy
at work on a real Synapse with short lifetimes (expired messages gone from the database), and
the console's retention page (the policy, and old local media gone from the disk)."""

from __future__ import annotations

import secrets
import sqlite3
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from console_helpers import unique
from harness import evaluation_settings
from matrix_helpers import Person, SideSynapse, wait_for_allowlist

from appliance.config.layout import Layout
from appliance.config.render import render_all, write_all
from appliance.config.secrets_store import ensure_secrets
from appliance.config.settings import SettingsError, parse_settings

DAY_MS = 86_400_000
# The test Synapse's lifetimes: Synapse takes milliseconds, the settings whole days.
SHORT_LIFETIME_MS = 2_000
PURGE_INTERVAL_MS = 500
PURGE_TIMEOUT = 90


def problems(data: dict) -> list[str]:
    with pytest.raises(SettingsError) as error:
        parse_settings(data, "test")
    return error.value.problems


@pytest.mark.parametrize(
    "retention, expected",
    [
        ({"min_days": 0}, "retention.min_days: Input should be greater than or equal to 1"),
        ({"max_days": 400}, "retention.max_days: Input should be less than or equal to 365"),
        ({"min_days": 30, "max_days": 7}, "retention.min_days: 30 is more than"),
        ({"max_days": 30, "default_days": 60}, "retention.default_days: 60 is outside"),
        ({"local_media_days": 0}, "retention.local_media_days: Input should be greater"),
        ({"max_days": 90, "rooms": {"forum": 120}}, "retention.rooms.forum: 120 is outside"),
        ({"rooms": {"salon": 30}}, "retention.rooms.salon: unknown key"),
    ],
)
def test_lifetimes_out_of_bounds_are_refused_with_the_key(retention, expected):
    found = problems({"retention": retention})
    assert any(problem.startswith(expected) for problem in found), found


def test_synapse_reads_the_rendered_policy(tmp_path):
    from synapse.config.homeserver import HomeServerConfig

    retention = {"min_days": 2, "max_days": 180, "default_days": 90, "local_media_days": 400}
    settings = parse_settings(
        {"retention": retention, "paths": {"state_dir": str(tmp_path)}}, "test"
    )
    layout = Layout.from_settings(settings, tmp_path)
    ensure_secrets(layout)
    write_all(render_all(settings, layout))
    config = HomeServerConfig.load_config("test", ["-c", str(layout.homeserver_config)])
    assert config.retention.retention_enabled
    assert config.retention.retention_allowed_lifetime_min == 2 * DAY_MS
    assert config.retention.retention_allowed_lifetime_max == 180 * DAY_MS
    assert config.retention.retention_default_max_lifetime == 90 * DAY_MS
    assert config.media.media_retention_local_media_lifetime_ms == 400 * DAY_MS
    assert config.media.media_retention_remote_media_lifetime_ms == 90 * DAY_MS


# --- a Synapse whose lifetimes last seconds ------------------------------------------------


def shorten_lifetimes(config: dict) -> None:
    """The rendered policy, with seconds where the settings allow only days."""
    retention = config["retention"]
    assert retention["enabled"] is True and retention["default_policy"]["max_lifetime"] == "1d"
    retention["allowed_lifetime_min"] = SHORT_LIFETIME_MS // 2
    retention["default_policy"]["max_lifetime"] = SHORT_LIFETIME_MS
    (job,) = retention["purge_jobs"]
    job["interval"] = PURGE_INTERVAL_MS


@pytest.fixture(scope="module")
def short_lived(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("retention")
    settings = evaluation_settings(state_dir, retention={"default_days": 1, "rooms": {"forum": 30}})
    layout = Layout.from_settings(settings, state_dir)
    with SideSynapse(settings, layout, edit_config=shorten_lifetimes) as side:
        wait_for_allowlist(side.client())
        yield side


def event_stored(database: Path, event_id: str) -> bool:
    with sqlite3.connect(database, timeout=30) as connection:
        return (
            connection.execute("SELECT 1 FROM events WHERE event_id = ?", (event_id,)).fetchone()
            is not None
        )


def test_each_kind_of_room_is_created_with_its_lifetime(short_lived):
    agent = Person.register(short_lived.client(), f"{unique('kinds')}@ac-paris.fr")
    forum = agent.new_room(preset="public_chat", name=unique("forum"))
    private = agent.new_room(preset="private_chat", name=unique("private"))
    assert agent.state(forum)[("m.room.retention", "")] == {"max_lifetime": 30 * DAY_MS}
    assert ("m.room.retention", "") not in agent.state(private)


def test_an_expired_message_is_deleted_from_the_database(short_lived):
    client = short_lived.client()
    agent = Person.register(client, f"{unique('keep')}@ac-paris.fr")
    # A private room has no lifetime of its kind here: the (shortened) default applies.
    room_id = agent.new_room(preset="private_chat", name=unique("private"))
    sent = agent.send_text(room_id, "gone soon")
    assert sent.status_code == 200, sent.text
    expired = sent.json()["event_id"]
    database = short_lived.layout.synapse_dir / "homeserver.db"
    assert event_stored(database, expired)

    deadline = time.monotonic() + PURGE_TIMEOUT
    while event_stored(database, expired):
        assert time.monotonic() < deadline, "the purge job never deleted the expired message"
        # Synapse never purges a room's latest event: a newer one lets the expired one go.
        assert agent.send_text(room_id, "newer").status_code == 200
        time.sleep(0.5)
    seen = agent.call("GET", f"/_matrix/client/v3/rooms/{quote(room_id)}/event/{expired}")
    assert seen.status_code == 404


# --- the console page -----------------------------------------------------------------------


def upload(synapse, token: str) -> str:
    response = requests.post(
        f"{synapse.url}/_matrix/media/v3/upload?filename=old.txt",
        data=b"old " + secrets.token_hex(8).encode(),
        timeout=30,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "text/plain"},
    )
    assert response.status_code == 200, response.text
    return response.json()["content_uri"]


def stored_file(appliance, media_id: str) -> Path:
    """Where Synapse keeps a local file (media_store/local_content/ab/cd/efgh...)."""
    return (
        appliance.layout.media_store / "local_content" / media_id[:2] / media_id[2:4] / media_id[4:]
    )


def age_media(appliance, media_id: str, days: int) -> None:
    """Make a file uploaded now look uploaded and last used `days` ago."""
    then = int((time.time() - days * 86400) * 1000)
    database = appliance.layout.synapse_dir / "homeserver.db"
    with sqlite3.connect(database, timeout=30) as connection:
        connection.execute(
            "UPDATE local_media_repository SET created_ts = ?, last_access_ts = ?"
            " WHERE media_id = ?",
            (then, then, media_id),
        )


def test_the_page_shows_the_policy_of_the_settings(app, console, appliance):
    app.config["RETENTION"] = appliance.settings.retention.model_dump(mode="json")
    page = console.get("/retention/")
    assert "1 to 365 days" in page
    assert 'data-policy="remote-media">90 days' in page


def test_old_local_media_are_deleted_from_the_disk_and_audited(console, synapse, appliance):
    user_id = synapse.create_user(unique("media"), "Media [ac-paris.fr]")
    token = synapse.login(user_id)
    old, recent = upload(synapse, token), upload(synapse, token)
    old_id, recent_id = old.rpartition("/")[2], recent.rpartition("/")[2]
    assert stored_file(appliance, old_id).exists() and stored_file(appliance, recent_id).exists()
    age_media(appliance, old_id, days=40)

    console.confirm("/retention/delete_local", days="30")
    assert not stored_file(appliance, old_id).exists()
    assert stored_file(appliance, recent_id).exists()
    audit = console.get("/audit/?q=retention.delete_local")
    assert "media unused for 30 days" in audit


def test_purging_remote_media_is_audited_and_days_are_bounded(console):
    console.confirm("/retention/purge_remote", days="7")
    assert "files deleted (unused for 7 days)" in console.get("/audit/?q=retention.purge_remote")
    console.post("/retention/purge_remote", days="0")
    assert "Number must be between 1 and 3650" in console.get("/retention/")
