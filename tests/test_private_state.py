# SPDX-License-Identifier: AGPL-3.0-or-later
"""Evaluation secrets stay private: nothing under the state directory is open to other users.

The state directory holds Synapse's database (everyone's access tokens), the Maildir (links that
register accounts or reset passwords), the secrets, media and logs. After the session's
appliance is up and has created files of its own (a mail, Synapse's SQLite write-ahead log, an
upload), every directory must be 0700 at most and every file 0600 at most.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from harness import TEST_DOMAINS
from matrix_media_helpers import register_user, unique_bytes, upload_ok

from appliance.evaluation.lifecycle import make_private


def open_to_others(root: Path) -> list[str]:
    """Every path under root (root included) that the group or other users may use at all."""
    found = []
    for directory, subdirectories, files in os.walk(root):
        for path in [
            directory,
            *(os.path.join(directory, name) for name in subdirectories + files),
        ]:
            mode = os.lstat(path).st_mode
            # A symbolic link's own mode is always 0777 and grants nothing.
            if not stat.S_ISLNK(mode) and mode & 0o077:
                found.append(f"{stat.filemode(mode)} {os.path.relpath(path, root)}")
    return found


def test_nothing_in_the_state_directory_is_open_to_other_users(
    appliance, client, mail_sink, synapse_url
):
    state_dir = appliance.layout.state_dir
    # Files the services create while they run: a mail in the Maildir, media in the store.
    address = f"private-{secrets.token_hex(4)}@{TEST_DOMAINS[0]}"
    client.mail_for(client.open_session("register", address))
    secret = appliance.layout.secret("registration_shared_secret").read_text().strip()
    upload_ok(synapse_url, register_user(synapse_url, secret, "private"), unique_bytes())

    new_mails = list((appliance.layout.mail_dir / "new").iterdir())
    assert new_mails, "the mail sink stored no mail"
    wal = appliance.layout.synapse_dir / "homeserver.db-wal"
    assert wal.exists(), "Synapse's SQLite write-ahead log is not there to check"
    assert any(path.is_file() for path in appliance.layout.media_store.rglob("*"))
    assert open_to_others(state_dir) == []


def test_a_state_directory_made_by_an_older_release_is_closed(tmp_path):
    state_dir = tmp_path / "var"
    (state_dir / "synapse" / "media_store").mkdir(parents=True, mode=0o755)
    os.chmod(state_dir, 0o755)
    os.chmod(state_dir / "synapse", 0o755)
    database = state_dir / "synapse" / "homeserver.db"
    database.write_text("tokens")
    os.chmod(database, 0o644)
    (state_dir / "log").symlink_to("/var/log")
    make_private(state_dir)
    assert open_to_others(state_dir) == []
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(os.stat("/var/log").st_mode) & 0o005  # a link's target is not ours
