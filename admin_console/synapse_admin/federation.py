# SPDX-License-Identifier: AGPL-3.0-or-later
"""Synapse's federation destinations Admin API: how each peer is doing, as Synapse sees it."""

from __future__ import annotations

from dataclasses import dataclass

from admin_console.synapse_admin.client import SynapseClient, SynapseRefused, segment

DESTINATIONS = "/_synapse/admin/v1/federation/destinations"


@dataclass(frozen=True)
class Destination:
    """Synapse's record of one remote server (absent until the first transaction)."""

    server_name: str
    # Millisecond timestamps; failure_ts is when the current run of failures began.
    failure_ts: int | None
    retry_last_ts: int
    retry_interval: int
    last_successful_stream_ordering: int | None

    @property
    def failing(self) -> bool:
        return self.failure_ts is not None or self.retry_interval > 0

    @property
    def status(self) -> str:
        """failing, ok (a transaction went through), or never (none yet)."""
        if self.failing:
            return "failing"
        return "never" if self.last_successful_stream_ordering is None else "ok"

    @property
    def next_retry_ts(self) -> int | None:
        return self.retry_last_ts + self.retry_interval if self.retry_interval else None


def destination(synapse: SynapseClient, server_name: str) -> Destination | None:
    """Synapse's record of server_name, or None when Synapse never dealt with it."""
    try:
        body = synapse.get(f"{DESTINATIONS}/{segment(server_name)}")
    except SynapseRefused as error:
        if error.status == 404:
            return None
        raise
    return Destination(
        server_name=body["destination"],
        failure_ts=body.get("failure_ts"),
        retry_last_ts=body.get("retry_last_ts") or 0,
        retry_interval=body.get("retry_interval") or 0,
        last_successful_stream_ordering=body.get("last_successful_stream_ordering"),
    )


def reset_connection(synapse: SynapseClient, server_name: str) -> None:
    """Forget the back-off towards server_name: Synapse tries it again at once."""
    synapse.post(f"{DESTINATIONS}/{segment(server_name)}/reset_connection")
