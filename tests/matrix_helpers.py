# SPDX-License-Identifier: AGPL-3.0-or-later
"""Client-side Matrix flows for tests, run over real HTTP as any client would run them.

`MatrixClient` requests a verification mail, reads the link from the SMTP sink's Maildir,
follows it like a person in a browser, and registers, logs in, resets a password or adds an
address.  Each mail is found by the session id that Synapse returned for it, so tests that mail
the same address several times never read each other's links.

`SideSynapse` runs a second, short-lived Synapse with the appliance module for what the shared
appliance must not be put through (an unreachable SMTP server, a loosened config); it is one
case of `SideServices`, which the benchmarks also use to start throwaway services.
"""

from __future__ import annotations

import email.message
import mailbox
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import requests
import yaml

from appliance.config.layout import Layout
from appliance.config.render import render_all, write_all
from appliance.config.secrets_store import ensure_secrets
from appliance.config.settings import Settings
from appliance.evaluation import services
from appliance.evaluation.supervisor import ServiceSpec, start, stop, tail, wait_until_ready
from appliance.operations.service_account import ensure_service_token

# Meets the appliance's password policy (10+ characters, upper, lower, digit).
PASSWORD = "Correct-Horse-Battery-42"
TIMEOUT = 30

# Where each kind of verification mail is requested (client-server API v3).
REQUEST_TOKEN_PATHS = {
    "register": "/_matrix/client/v3/register/email/requestToken",
    "password_reset": "/_matrix/client/v3/account/password/email/requestToken",
    "add_email": "/_matrix/client/v3/account/3pid/email/requestToken",
}

IDENTITY_INFO_PATH = "/_matrix/identity/api/v1/info"

_LINK = re.compile(r"https?://\S+")


class MailNotFound(AssertionError):
    pass


@dataclass(frozen=True)
class EmailSession:
    """A verification session opened by requestToken: what a client keeps to use the link."""

    address: str
    client_secret: str
    sid: str

    @property
    def threepid_creds(self) -> dict:
        return {"sid": self.sid, "client_secret": self.client_secret}

    @property
    def auth(self) -> dict:
        """The user-interactive auth stage that proves the address."""
        return {"type": "m.login.email.identity", "threepid_creds": self.threepid_creds}


@dataclass(frozen=True)
class Account:
    user_id: str
    access_token: str
    device_id: str
    address: str
    password: str


def read_maildir(directory: Path) -> list[email.message.Message]:
    if not directory.exists():
        return []
    return list(mailbox.Maildir(directory, create=False))


def plain_text(message: email.message.Message) -> str:
    """The text/plain body of a (possibly multipart) message, decoded."""
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            return payload.decode(part.get_content_charset() or "utf-8")
    raise MailNotFound(f"the mail {message['Subject']!r} has no text/plain part")


class MatrixClient:
    def __init__(self, base_url: str, mail_dir: Path, http: requests.Session | None = None):
        self.base_url = base_url.rstrip("/")
        self.mail_dir = mail_dir
        self.http = http or requests.Session()

    # --- plain HTTP ------------------------------------------------------------------------
    def request(
        self, method: str, path: str, *, token: str | None = None, **kwargs
    ) -> requests.Response:
        return self.http.request(
            method, self.base_url + path, headers=_bearer(token), timeout=TIMEOUT, **kwargs
        )

    def get(self, path: str, *, token: str | None = None, **kwargs) -> requests.Response:
        return self.request("GET", path, token=token, **kwargs)

    def post(self, path: str, body: dict, *, token: str | None = None) -> requests.Response:
        return self.request("POST", path, token=token, json=body)

    def identity_info(self, address: str, medium: str = "email") -> requests.Response:
        """Tchap's domain lookup, which clients call before registering."""
        return self.get(IDENTITY_INFO_PATH, params={"medium": medium, "address": address})

    # --- email verification ----------------------------------------------------------------
    def request_token(
        self,
        purpose: str,
        address: str,
        *,
        client_secret: str | None = None,
        send_attempt: int = 1,
        token: str | None = None,
    ) -> requests.Response:
        """Ask Synapse to mail a verification link; `purpose` is a key of REQUEST_TOKEN_PATHS."""
        body = {
            "client_secret": client_secret or secrets.token_hex(16),
            "email": address,
            "send_attempt": send_attempt,
        }
        return self.post(REQUEST_TOKEN_PATHS[purpose], body, token=token)

    def open_session(self, purpose: str, address: str, *, token: str | None = None) -> EmailSession:
        """requestToken that must succeed; returns the session to use the link with."""
        client_secret = secrets.token_hex(16)
        response = self.request_token(purpose, address, client_secret=client_secret, token=token)
        assert response.status_code == 200, response.text
        return EmailSession(address, client_secret, response.json()["sid"])

    def mail_for(self, session: EmailSession, timeout: float = 15.0) -> email.message.Message:
        """The mail Synapse sent for this session (found by the sid in its link)."""
        deadline = time.monotonic() + timeout
        while True:
            for message in self.mails_to(session.address):
                if _session_link(message, session) is not None:
                    return message
            if time.monotonic() > deadline:
                raise MailNotFound(f"no mail for session {session.sid} to {session.address}")
            time.sleep(0.02)

    def link_for(self, session: EmailSession, timeout: float = 15.0) -> str:
        """The link of the mail Synapse sent for this session."""
        return _session_link(self.mail_for(session, timeout), session)

    def mails_to(self, address: str) -> list[email.message.Message]:
        return [
            m for m in read_maildir(self.mail_dir) if address.lower() in (m["To"] or "").lower()
        ]

    def follow(self, link: str) -> requests.Response:
        """What a person does with the link: open it, and confirm if the page asks to."""
        response = self.http.get(link, timeout=TIMEOUT, allow_redirects=False)
        if response.status_code == 200 and '<form method="post"' in response.text:
            # The password reset page asks for a confirmation, posted back with the same fields.
            parts = urlsplit(link)
            response = self.http.post(
                urlunsplit(parts._replace(query="")),
                data=dict(parse_qsl(parts.query)),
                timeout=TIMEOUT,
            )
        return response

    def verify(self, purpose: str, address: str, *, token: str | None = None) -> EmailSession:
        """requestToken, then follow the mailed link: the session is validated."""
        session = self.open_session(purpose, address, token=token)
        response = self.follow(self.link_for(session))
        assert response.status_code == 200, response.text
        return session

    # --- accounts --------------------------------------------------------------------------
    def register(
        self, session: EmailSession, password: str = PASSWORD, **extra
    ) -> requests.Response:
        """Complete /register with a validated session (`extra`: username, device name...)."""
        body = {"password": password, **extra}
        first = self.post("/_matrix/client/v3/register", body)
        if first.status_code != 401:
            return first  # refused before the auth stages
        auth = {**session.auth, "session": first.json()["session"]}
        return self.post("/_matrix/client/v3/register", {**body, "auth": auth})

    def register_account(self, address: str, password: str = PASSWORD, **extra) -> Account:
        """The whole registration of an allowed address; returns the new account."""
        response = self.register(self.verify("register", address), password, **extra)
        assert response.status_code == 200, response.text
        body = response.json()
        return Account(body["user_id"], body["access_token"], body["device_id"], address, password)

    def login_with_email(
        self, address: str, password: str = PASSWORD, device_name: str | None = None
    ) -> requests.Response:
        body = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.thirdparty", "medium": "email", "address": address},
            "password": password,
        }
        if device_name:
            body["initial_device_display_name"] = device_name
        return self.post("/_matrix/client/v3/login", body)

    def reset_password(self, session: EmailSession, new_password: str) -> requests.Response:
        body = {"new_password": new_password, "logout_devices": True, "auth": session.auth}
        return self.post("/_matrix/client/v3/account/password", body)

    def add_email(self, account: Account, session: EmailSession) -> requests.Response:
        body = {
            "client_secret": session.client_secret,
            "sid": session.sid,
            "auth": {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": account.user_id},
                "password": account.password,
            },
        }
        return self.post("/_matrix/client/v3/account/3pid/add", body, token=account.access_token)

    def whoami(self, token: str) -> requests.Response:
        return self.get("/_matrix/client/v3/account/whoami", token=token)

    def display_name(self, user_id: str, *, token: str) -> str | None:
        """The global display name, as the holder of ``token`` may see it (profiles need a token:
        ``require_auth_for_profile_requests``)."""
        response = self.get(f"/_matrix/client/v3/profile/{user_id}/displayname", token=token)
        return response.json().get("displayname") if response.status_code == 200 else None

    def user_of_email(self, address: str, admin_token: str) -> requests.Response:
        """The Admin API's account lookup by bound address (404 if no account has it)."""
        return self.get(f"/_synapse/admin/v1/threepid/email/users/{address}", token=admin_token)


def _session_link(message: email.message.Message, session: EmailSession) -> str | None:
    links = [link for link in _LINK.findall(plain_text(message)) if f"sid={session.sid}" in link]
    return links[0] if links else None


def client_for(appliance) -> MatrixClient:
    """A client of the shared evaluation appliance (the `appliance` fixture), reading its sink."""
    mail_dir = appliance.layout.mail_dir
    return MatrixClient(appliance.settings.synapse.listen.url, mail_dir)


def _bearer(token: str | None) -> dict:
    return {"Authorization": f"Bearer {token}"} if token else {}


# --- a second Synapse --------------------------------------------------------------------------


class SideServices:
    """Some services of an evaluation appliance, started by a test or a benchmark beside the
    shared appliance and stopped (in reverse order) when the block ends.

    Secrets and every config file are rendered as `make up` renders them; `edit_config`
    receives the rendered homeserver.yaml as a dict and changes it in place, for
    configurations the renderer never produces (e.g. without the module, to compare).
    """

    def __init__(
        self,
        settings: Settings,
        layout: Layout,
        specs: Sequence[ServiceSpec],
        *,
        edit_config: Callable[[dict], None] | None = None,
    ):
        self.settings = settings
        self.layout = layout
        self._specs = list(specs)
        self._edit_config = edit_config
        self._running: list[ServiceSpec] = []

    def __enter__(self) -> Self:
        ensure_secrets(self.layout)
        write_all(render_all(self.settings, self.layout))
        if self._edit_config is not None:
            config = yaml.safe_load(self.layout.homeserver_config.read_text())
            self._edit_config(config)
            self.layout.homeserver_config.write_text(yaml.safe_dump(config))
        try:
            for spec in self._specs:
                self._start(spec)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        for spec in reversed(self._running):
            stop(spec)
        self._running.clear()

    def _stop(self, spec: ServiceSpec) -> None:
        stop(spec)
        self._running.remove(spec)

    def _start(self, spec: ServiceSpec) -> None:
        process = start(spec)
        self._running.append(spec)
        reason = wait_until_ready(spec, process)
        if reason is not None:
            raise RuntimeError(f"{spec.name} {reason}\n{tail(spec.logfile)}")


class SideSynapse(SideServices):
    """A Synapse with the module (and optionally its own SMTP sink)."""

    def __init__(
        self,
        settings: Settings,
        layout: Layout,
        *,
        with_mail_sink: bool = True,
        edit_config: Callable[[dict], None] | None = None,
        before: Sequence[ServiceSpec] = (),
    ):
        """before: other services of the appliance to start first (e.g. coturn)."""
        self.url = settings.synapse.listen.url
        self._synapse = services.synapse(settings, layout)
        self._sink = services.mail_sink(settings, layout) if with_mail_sink else None
        specs = [*before, self._sink, self._synapse] if self._sink else [*before, self._synapse]
        super().__init__(settings, layout, specs, edit_config=edit_config)

    def client(self) -> MatrixClient:
        return MatrixClient(self.url, self.layout.mail_dir)

    def admin_token(self) -> str:
        """A server admin's token, made the way the appliance makes the console's."""
        ensure_service_token(
            self.url,
            shared_secret_file=self.layout.secret("registration_shared_secret"),
            password_file=self.layout.secret("synapse-service-password"),
            token_file=self.layout.service_token,
        )
        return self.layout.service_token.read_text().strip()

    def start_mail_sink(self) -> None:
        self._start(self._sink)

    def stop_mail_sink(self) -> None:
        """Stop this Synapse's own sink (never the shared appliance's): SMTP is then down."""
        self._stop(self._sink)

    def restart_synapse(self) -> None:
        self._stop(self._synapse)
        self._start(self._synapse)

    def stop_synapse(self) -> None:
        """Stop this Synapse (a server of the network that is down), until start_synapse."""
        self._stop(self._synapse)

    def start_synapse(self) -> None:
        """Start it again; returns once it is ready."""
        self._start(self._synapse)


# --- rooms and people --------------------------------------------------------------------------
# Appended for the rooms-and-people tests (rooms, externals, directories); plain client-server
# API calls, as Element or Tchap make them.

_QUOTE = {"!": "%21", "#": "%23", ":": "%3A", "@": "%40"}


def _path_part(text: str) -> str:
    """A room ID, alias or user ID as one path segment."""
    return "".join(_QUOTE.get(ch, ch) for ch in text)


@dataclass(frozen=True)
class Person:
    """A user with an access token, acting as a Matrix client would."""

    client: MatrixClient
    user_id: str
    token: str

    @classmethod
    def register(cls, client: MatrixClient, address: str) -> Person:
        account = client.register_account(address)
        return cls(client, account.user_id, account.access_token)

    def call(self, method: str, path: str, body: dict | None = None, **kwargs) -> requests.Response:
        return self.client.request(method, path, token=self.token, json=body, **kwargs)

    # rooms
    def create_room(self, **body) -> requests.Response:
        return self.call("POST", "/_matrix/client/v3/createRoom", body)

    def new_room(self, **body) -> str:
        response = self.create_room(**body)
        assert response.status_code == 200, response.text
        return response.json()["room_id"]

    def state(self, room_id: str) -> dict[tuple[str, str], dict]:
        """The room's current state: (type, state_key) -> content."""
        response = self.call("GET", f"/_matrix/client/v3/rooms/{_path_part(room_id)}/state")
        assert response.status_code == 200, response.text
        return {(e["type"], e["state_key"]): e["content"] for e in response.json()}

    def state_events(self, room_id: str) -> list[dict]:
        response = self.call("GET", f"/_matrix/client/v3/rooms/{_path_part(room_id)}/state")
        assert response.status_code == 200, response.text
        return response.json()

    def put_state(
        self, room_id: str, event_type: str, content: dict, state_key: str = ""
    ) -> requests.Response:
        path = f"/_matrix/client/v3/rooms/{_path_part(room_id)}/state/{event_type}/{state_key}"
        return self.call("PUT", path, content)

    def invite(self, room_id: str, user_id: str) -> requests.Response:
        path = f"/_matrix/client/v3/rooms/{_path_part(room_id)}/invite"
        return self.call("POST", path, {"user_id": user_id})

    def join(self, room: str) -> requests.Response:
        """Join by room ID or alias (a link to the room gives either)."""
        return self.call("POST", f"/_matrix/client/v3/join/{_path_part(room)}", {})

    def send_text(self, room_id: str, text: str) -> requests.Response:
        txn = secrets.token_hex(8)
        path = f"/_matrix/client/v3/rooms/{_path_part(room_id)}/send/m.room.message/{txn}"
        return self.call("PUT", path, {"msgtype": "m.text", "body": text})

    def joined_rooms(self) -> list[str]:
        response = self.call("GET", "/_matrix/client/v3/joined_rooms")
        assert response.status_code == 200, response.text
        return response.json()["joined_rooms"]

    def joined_members(self, room_id: str) -> list[str]:
        path = f"/_matrix/client/v3/rooms/{_path_part(room_id)}/joined_members"
        response = self.call("GET", path)
        assert response.status_code == 200, response.text
        return sorted(response.json()["joined"])

    # directories
    def publish(self, room_id: str, visibility: str = "public") -> requests.Response:
        path = f"/_matrix/client/v3/directory/list/room/{_path_part(room_id)}"
        return self.call("PUT", path, {"visibility": visibility})

    def set_alias(self, alias: str, room_id: str) -> requests.Response:
        path = f"/_matrix/client/v3/directory/room/{_path_part(alias)}"
        return self.call("PUT", path, {"room_id": room_id})

    def public_rooms(self, term: str | None = None) -> list[dict]:
        body = {"limit": 100, **({"filter": {"generic_search_term": term}} if term else {})}
        response = self.call("POST", "/_matrix/client/v3/publicRooms", body)
        assert response.status_code == 200, response.text
        return response.json()["chunk"]

    def search_users(self, term: str) -> list[str]:
        body = {"search_term": term, "limit": 50}
        response = self.call("POST", "/_matrix/client/v3/user_directory/search", body)
        assert response.status_code == 200, response.text
        return [user["user_id"] for user in response.json()["results"]]

    # mail about missed messages: the account's pushers, the email one among them
    def pushers(self) -> list[dict]:
        response = self.call("GET", "/_matrix/client/v3/pushers")
        assert response.status_code == 200, response.text
        return response.json()["pushers"]

    def add_email_pusher(self, address: str) -> requests.Response:
        """What a client sends to turn the mails on (Element's "Enable email notifications")."""
        body = {
            "kind": "email",
            "app_id": "m.email",
            "pushkey": address,
            "app_display_name": "Email Notifications",
            "device_display_name": address,
            "lang": "fr",
            "data": {"brand": "Element"},
            "append": True,
        }
        return self.call("POST", "/_matrix/client/v3/pushers/set", body)

    def remove_pusher(self, app_id: str, pushkey: str) -> requests.Response:
        """What a client sends to turn a pusher off (Element's "Enable email notifications")."""
        body = {"kind": None, "app_id": app_id, "pushkey": pushkey}
        return self.call("POST", "/_matrix/client/v3/pushers/set", body)

    # invitations by email, through the appliance's endpoint
    def invite_by_email(self, room_id: str, address: str) -> requests.Response:
        return self.call(
            "POST",
            "/_synapse/client/appliance/v1/invite_external",
            {"room_id": room_id, "email": address},
        )


def refusal(response: requests.Response) -> str:
    """The message of an M_FORBIDDEN refusal (asserts it is one)."""
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["errcode"] == "M_FORBIDDEN", body
    return body["error"]


# --- mail about missed messages ----------------------------------------------------------------
NOTIFICATION_TIMEOUT = 60.0


def bodies(message: email.message.Message) -> str:
    """Every text part of a mail, decoded (plain and HTML)."""
    parts = [
        part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")
        for part in message.walk()
        if part.get_content_maintype() == "text"
    ]
    return "\n".join(parts)


def notification_mails(client: MatrixClient, address: str) -> list[email.message.Message]:
    """The mails to the address but its registration's (which carries a verification link)."""
    return [m for m in client.mails_to(address) if "sid=" not in bodies(m)]


def wait_for_notification(client: MatrixClient, address: str) -> list[email.message.Message]:
    """The mails about missed messages to the address, once there is one."""
    deadline = time.monotonic() + NOTIFICATION_TIMEOUT
    while not (mails := notification_mails(client, address)):
        assert time.monotonic() < deadline, (
            f"no notification to {address} in {NOTIFICATION_TIMEOUT} s"
        )
        time.sleep(0.2)
    return mails


def wait_for_allowlist(client: MatrixClient, timeout: float = 30.0) -> None:
    """A Synapse just started answers before its module has read the allowlist (the identity
    lookup says 503 until then): wait for it before registering anyone."""
    deadline = time.monotonic() + timeout
    while client.identity_info("probe@example.org").status_code == 503:
        if time.monotonic() > deadline:
            raise AssertionError(f"the allowlist was not loaded within {timeout} s")
        time.sleep(0.1)


# What a Tchap client sends in createRoom's initial_state for a room open to externals.
OPEN_TO_EXTERNALS = [
    {"type": "im.vector.room.access_rules", "state_key": "", "content": {"rule": "unrestricted"}}
]
