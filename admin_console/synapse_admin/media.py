"""Media through Synapse's Admin API: quarantine, release, delete one file."""

from __future__ import annotations

from dataclasses import dataclass

from admin_console.synapse_admin.client import SynapseClient, segment


@dataclass(frozen=True)
class MediaRef:
    server_name: str
    media_id: str

    @classmethod
    def parse(cls, text: str, local_server: str) -> MediaRef:
        """Accept mxc://server/id, server/id, or the scanner's local/id; raise ValueError."""
        text = text.strip().removeprefix("mxc://")
        server, _, media_id = text.partition("/")
        if not server or not media_id or "/" in media_id:
            raise ValueError(f"{text!r} is not a media reference (mxc://server/media_id)")
        return cls(local_server if server == "local" else server, media_id)

    def __str__(self) -> str:
        return f"mxc://{self.server_name}/{self.media_id}"

    @property
    def path(self) -> str:
        return f"{segment(self.server_name)}/{segment(self.media_id)}"


def quarantine(synapse: SynapseClient, media: MediaRef) -> None:
    synapse.post(f"/_synapse/admin/v1/media/quarantine/{media.path}")


def release(synapse: SynapseClient, media: MediaRef) -> None:
    synapse.post(f"/_synapse/admin/v1/media/unquarantine/{media.path}")


def delete(synapse: SynapseClient, media: MediaRef) -> None:
    synapse.delete(f"/_synapse/admin/v1/media/{media.path}")
