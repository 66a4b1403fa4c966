# SPDX-License-Identifier: AGPL-3.0-or-later
"""The media page: files the antivirus refused, the signatures, quarantine/release/delete."""

from __future__ import annotations

import secrets

import pytest
import requests
from console_helpers import unique

QUARANTINE_ENDPOINT = "/_synapse/client/appliance/v1/quarantine"
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


@pytest.fixture
def uploader(synapse):
    user_id = synapse.create_user(unique("up"), "Uploader [ac-paris.fr]")
    return user_id, synapse.login(user_id)


def upload(synapse, token: str, content: bytes) -> requests.Response:
    return requests.post(
        f"{synapse.url}/_matrix/media/v3/upload?filename=file.txt",
        data=content,
        timeout=30,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "text/plain"},
    )


def download_status(synapse, token: str, mxc: str) -> int:
    server_and_id = mxc.removeprefix("mxc://")
    return requests.get(
        f"{synapse.url}/_matrix/client/v1/media/download/{server_and_id}",
        timeout=30,
        headers={"Authorization": f"Bearer {token}"},
    ).status_code


def test_quarantine_release_delete_a_stored_file(console, synapse, uploader):
    _, token = uploader
    mxc = upload(synapse, token, b"clean " + secrets.token_bytes(8).hex().encode()).json()[
        "content_uri"
    ]
    assert download_status(synapse, token, mxc) == 200
    console.confirm("/media/quarantine", media=mxc)
    assert download_status(synapse, token, mxc) == 404
    console.confirm("/media/release", media=mxc)
    assert download_status(synapse, token, mxc) == 200
    console.confirm("/media/delete", media=mxc)
    assert download_status(synapse, token, mxc) == 404
    audit = console.get(f"/audit/?q={mxc}")
    for action in ("media.quarantine", "media.release", "media.delete"):
        assert action in audit


def test_bad_reference_is_refused_with_reason(console):
    console.confirm("/media/delete", media="not-a-reference")
    # The reason, whichever part is wrong: "is not a media reference", "is not a media ID"...
    assert "is not a media" in console.get("/media/")


def test_refused_upload_is_listed_with_uploader_and_signature(console, synapse, uploader):
    user_id, token = uploader
    assert upload(synapse, token, EICAR).status_code == 403  # infected (503: not scanned)
    record = next(
        r for r in synapse.call("GET", QUARANTINE_ENDPOINT)["records"] if r["user_id"] == user_id
    )
    page = console.get("/media/")
    row = page[page.index(record["media"]) :]
    row = row[: row.index("</tr>")]
    assert user_id in row and record["signature"] in row and record["sha256"][:12] in row


def test_signature_version_and_age_are_shown(console):
    page = console.get("/media/")
    assert "Signature version" in page and "old" in page
    assert "only the EICAR test string is detected" in page
