# SPDX-License-Identifier: AGPL-3.0-or-later
"""Media through Synapse's Admin API: quarantine, release, delete one file."""

from __future__ import annotations

from admin_console.synapse_admin.client import SynapseClient
from appliance.addresses.media_ref import (
    MediaRef,
)  # strict: no ".." server names in Admin API paths


def quarantine(synapse: SynapseClient, media: MediaRef) -> None:
    synapse.post(f"/_synapse/admin/v1/media/quarantine/{media.url_path}")


def release(synapse: SynapseClient, media: MediaRef) -> None:
    synapse.post(f"/_synapse/admin/v1/media/unquarantine/{media.url_path}")


def delete(synapse: SynapseClient, media: MediaRef) -> None:
    synapse.delete(f"/_synapse/admin/v1/media/{media.url_path}")
