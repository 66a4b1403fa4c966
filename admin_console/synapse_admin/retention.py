# SPDX-License-Identifier: AGPL-3.0-or-later
"""Deleting old media at once through Synapse's Admin API, the rule media_retention applies
every hour: other servers' files cached here, and files uploaded here not used since a date."""

from __future__ import annotations

from admin_console.synapse_admin.client import SynapseClient


def purge_remote_cache(synapse: SynapseClient, before_ms: int) -> int:
    """Delete the cached copies of remote files last used before before_ms; return how many."""
    body = synapse.post(f"/_synapse/admin/v1/purge_media_cache?before_ts={before_ms}")
    return int(body.get("deleted", 0))


def delete_local_media(synapse: SynapseClient, server_name: str, before_ms: int) -> int:
    """Delete files uploaded here and last used before before_ms (profile pictures are kept);
    return how many."""
    body = synapse.post(
        f"/_synapse/admin/v1/media/{server_name}/delete?before_ts={before_ms}&keep_profiles=true"
    )
    return int(body.get("total", 0))
