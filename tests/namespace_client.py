# SPDX-License-Identifier: AGPL-3.0-or-later
"""The Matrix clients of the two-host provisioning test, run inside the test's client network
namespace (`ip netns exec <namespace> python namespace_client.py`), so that no request to a
namespace's address ever leaves from the machine's own namespace.

One job a run: its JSON on stdin (tokens travel there, never in argv), its result as JSON on
stdout. Names resolve through the namespace's /etc/hosts (what `ip netns exec` mounts from
/etc/netns/<namespace>/hosts); TLS is checked against the test's certificate authority only.
Every wait is on a long-polling /sync and bounded.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import requests
from signedjson.key import generate_signing_key
from signedjson.sign import sign_json

sys.path.insert(0, str(Path(__file__).parent))
from matrix_helpers import MatrixClient, Person  # noqa: E402

SYNC_POLL_MS = 5000
WAIT_SECONDS = 120.0  # federation between two converged hosts on a loaded machine


def _http(job: dict) -> requests.Session:
    session = requests.Session()
    session.verify = job["ca"]
    session.trust_env = False  # no proxy, no other CA bundle from the environment
    return session


def _person(job: dict, who: dict) -> Person:
    return Person(MatrixClient(who["base_url"], Path(job["mail_dir"]), _http(job)), **who["as"])


class Timeline:
    """A person's view of their rooms through /sync, each call waiting for what comes next."""

    def __init__(self, person: Person):
        self.person = person
        self.since = self._sync(timeout_ms=0)["next_batch"]

    def _sync(self, timeout_ms: int, since: str | None = None) -> dict:
        params = {"timeout": timeout_ms, **({"since": since} if since else {})}
        response = self.person.call("GET", "/_matrix/client/v3/sync", params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def wait(self, what: str, found) -> object:
        """Sync until `found(sync response)` returns something; fail naming `what`."""
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            body = self._sync(SYNC_POLL_MS, self.since)
            self.since = body["next_batch"]
            result = found(body)
            if result:
                return result
        raise AssertionError(f"{what}: not within {WAIT_SECONDS:g} s")

    def invite_to(self, room_id: str) -> None:
        self.wait(
            f"the invite to {room_id} reaching {self.person.user_id}",
            lambda body: room_id in body.get("rooms", {}).get("invite", {}),
        )

    def message(self, room_id: str, body_text: str) -> dict:
        def arrived(body: dict):
            timeline = body.get("rooms", {}).get("join", {}).get(room_id, {}).get("timeline", {})
            for event in timeline.get("events", []):
                if event["type"] == "m.room.message" and event["content"].get("body") == body_text:
                    return event
            return None

        return self.wait(f"{body_text!r} reaching {self.person.user_id}", arrived)


# --- the jobs ----------------------------------------------------------------------------------
def register(job: dict) -> dict:
    """An agent registered through the mail flow (the link mailed to the test's SMTP sink)."""
    client = MatrixClient(job["base_url"], Path(job["mail_dir"]), _http(job))
    account = client.register_account(job["address"])
    return {"user_id": account.user_id, "token": account.access_token}


def private_room(job: dict) -> dict:
    """A private room created on A, B's agent invited, joined, a message each way."""
    alice, bob = _person(job, job["a"]), _person(job, job["b"])
    alice_sees, bob_sees = Timeline(alice), Timeline(bob)
    room = alice.new_room(preset="private_chat", name="Across hosts")
    invited = alice.invite(room, bob.user_id)
    assert invited.status_code == 200, invited.text
    bob_sees.invite_to(room)
    joined = bob.join(room)
    assert joined.status_code == 200, joined.text

    sent_at = time.monotonic()
    sent = alice.send_text(room, job["from_a"])
    assert sent.status_code == 200, sent.text
    on_b = bob_sees.message(room, job["from_a"])
    first_message_seconds = time.monotonic() - sent_at
    replied = bob.send_text(room, job["from_b"])
    assert replied.status_code == 200, replied.text
    on_a = alice_sees.message(room, job["from_b"])
    return {
        "room_id": room,
        "first_message_seconds": first_message_seconds,
        "on_b": {"sender": on_b["sender"], "body": on_b["content"]["body"]},
        "on_a": {"sender": on_a["sender"], "body": on_a["content"]["body"]},
        "members_on_b": bob.joined_members(room),
        "state_on_a": {f"{t}|{k}": c for (t, k), c in alice.state(room).items()},
    }


def identity_info(job: dict) -> dict:
    client = MatrixClient(job["base_url"], Path(job["mail_dir"]), _http(job))
    response = client.identity_info(job["address"])
    return {"status": response.status_code, "body": response.json()}


def signed_federation_request(job: dict) -> dict:
    """A federation request to `destination`'s federation port, signed as `origin` with a key
    made here (one the destination never saw): what any server on the Internet could send."""
    key = generate_signing_key("test")
    uri = f"/_matrix/federation/v1/query/profile?{urlencode(job['query'])}"
    request = {
        "method": "GET",
        "uri": uri,
        "origin": job["origin"],
        "destination": job["destination"],
    }
    signature = sign_json(request, job["origin"], key)["signatures"][job["origin"]]["ed25519:test"]
    authorization = (
        f'X-Matrix origin="{job["origin"]}",destination="{job["destination"]}",'
        f'key="ed25519:test",sig="{signature}"'
    )
    response = _http(job).get(
        f"https://{job['destination']}:{job['port']}{uri}",
        headers={"Authorization": authorization},
        timeout=30,
    )
    return {"status": response.status_code, "body": response.json()}


JOBS = {
    "register": register,
    "private_room": private_room,
    "identity_info": identity_info,
    "signed_federation_request": signed_federation_request,
}


def main() -> None:
    job = json.load(sys.stdin)
    json.dump(JOBS[job["job"]](job), sys.stdout)


if __name__ == "__main__":
    main()
