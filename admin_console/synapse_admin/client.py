# SPDX-License-Identifier: AGPL-3.0-or-later
"""The one HTTP client of the console towards Synapse: Admin API and the module's endpoints.

Every call carries the server-admin service token, read server-side from its 0600 file, except
the few any client may make (`token=False`); the token never leaves this module. Errors come
out as two exceptions a view can show as they are: `SynapseUnavailable` (Synapse cannot be
reached or answered garbage) and `SynapseRefused` (Synapse answered with a Matrix error:
errcode and message kept).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import quote

import requests
from flask import current_app

from appliance.config.worker_routes import is_media_path

TIMEOUT_SECONDS = 10.0


class SynapseUnavailable(Exception):
    """Synapse did not answer usefully; str() says why, for the operator."""


class SynapseRefused(Exception):
    """Synapse answered with a Matrix error."""

    def __init__(self, status: int, errcode: str, message: str, path: str):
        self.status = status
        self.errcode = errcode
        self.message = message
        self.path = path
        super().__init__(f"{message} ({errcode}, HTTP {status})")


class EndpointMissing(SynapseRefused):
    """The endpoint does not exist on this Synapse (e.g. a module feature not installed yet)."""


def segment(value: str) -> str:
    """One path segment: user and room IDs contain '@', ':', '!' and '#' that must be encoded."""
    return quote(value, safe="")


@dataclass
class SynapseClient:
    base_url: str
    token_file: Path
    timeout: float = TIMEOUT_SECONDS
    # With Synapse's workers, the media repository (and its admin endpoints) is not on the
    # main process: those paths go here (worker_routes decides which they are).
    media_url: str | None = None
    # A user's token borrowed for one action (reports.redact), used instead of the service
    # token; it never leaves the console either.
    borrowed_token: str | None = None

    def with_token(self, token: str) -> SynapseClient:
        """The same client, calling with a borrowed user token."""
        return replace(self, borrowed_token=token)

    def get(self, path: str, params: dict | list | None = None, *, token: bool = True) -> dict:
        """GET path; without token for the endpoints any client may call (no need to lend it)."""
        return self._call("GET", path, params=params, token=token)

    def post(self, path: str, body: dict | None = None) -> dict:
        return self._call("POST", path, json=body if body is not None else {})

    def put(self, path: str, body: dict | None = None) -> dict:
        return self._call("PUT", path, json=body if body is not None else {})

    def delete(self, path: str, body: dict | None = None) -> dict:
        return self._call("DELETE", path, json=body)

    def _token(self) -> str:
        if self.borrowed_token is not None:
            return self.borrowed_token
        try:
            return self.token_file.read_text().strip()
        except OSError as error:
            raise SynapseUnavailable(
                f"the console's Synapse service token cannot be read ({error.strerror})"
            ) from None

    def _call(self, method: str, path: str, token: bool = True, **kwargs) -> dict:
        headers = {"Authorization": f"Bearer {self._token()}"} if token else {}
        base = self.media_url if self.media_url and is_media_path(path) else self.base_url
        url = f"{base}{path}"
        try:
            response = requests.request(
                method, url, headers=headers, timeout=self.timeout, **kwargs
            )
        except requests.ConnectionError:
            raise SynapseUnavailable(
                f"Synapse is not reachable at {self.base_url} (connection refused)"
            ) from None
        except requests.Timeout:
            raise SynapseUnavailable(
                f"Synapse did not answer within {self.timeout:.0f} s"
            ) from None
        return _decode(response, path)


def _decode(response: requests.Response, path: str) -> dict:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.ok and isinstance(body, dict):
        return body
    if not isinstance(body, dict) or "errcode" not in body:
        raise SynapseUnavailable(
            f"Synapse answered {response.status_code} without a Matrix error on {path}"
        )
    errcode, message = body["errcode"], body.get("error", "")
    # Synapse's answer to a path nobody serves (e.g. a module endpoint not installed yet).
    if response.status_code in (404, 405) and errcode == "M_UNRECOGNIZED":
        raise EndpointMissing(response.status_code, errcode, message, path)
    raise SynapseRefused(response.status_code, errcode, message, path)


def client() -> SynapseClient:
    """The client of the current app, built from its config."""
    config = current_app.config
    media_url = config.get("SYNAPSE_MEDIA_URL")
    return SynapseClient(
        config["SYNAPSE_URL"].rstrip("/"),
        Path(config["SERVICE_TOKEN_FILE"]),
        float(config.get("SYNAPSE_TIMEOUT_SECONDS", TIMEOUT_SECONDS)),
        media_url.rstrip("/") if media_url else None,
    )
