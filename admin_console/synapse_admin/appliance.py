"""The appliance module's own admin endpoints (`/_synapse/client/appliance/v1/`).

They cover what Synapse's Admin API does not: the allowlist of email domains and the files
the antivirus refused. Same service token, same errors as the Admin API.
"""

from __future__ import annotations

from dataclasses import dataclass

from admin_console.synapse_admin.client import SynapseClient, segment
from appliance.domain_allowlist import DomainAllowlist

DOMAINS = "/_synapse/client/appliance/v1/domains"
QUARANTINE = "/_synapse/client/appliance/v1/quarantine"


@dataclass(frozen=True)
class DomainEntry:
    entry: str  # "ac-paris.fr" or "*.gouv.fr"
    added_at: int | None  # ms
    added_by: str | None


@dataclass(frozen=True)
class RefusedFile:
    record_id: str
    media: str  # "local/<id>" or "<server>/<id>"
    kind: str  # upload, remote, thumbnail, url_preview
    user_id: str | None
    signature: str
    sha256: str
    detected_ts: int  # ms


@dataclass(frozen=True)
class RefusedPage:
    records: list[RefusedFile]
    total: int
    offset: int
    next_offset: int | None


def list_domains(synapse: SynapseClient) -> list[DomainEntry]:
    body = synapse.get(DOMAINS)
    return [
        DomainEntry(row["entry"], row.get("added_at"), row.get("added_by"))
        for row in body.get("domains", [])
    ]


def add_domain(synapse: SynapseClient, entry: str) -> tuple[str, bool]:
    """Add an entry; return (its normalised form, whether it was new)."""
    body = synapse.put(f"{DOMAINS}/{segment(entry)}")
    return body["entry"], bool(body.get("created"))


def remove_domain(synapse: SynapseClient, entry: str) -> None:
    synapse.delete(f"{DOMAINS}/{segment(entry)}")


def list_refused(synapse: SynapseClient, offset: int = 0, limit: int = 50) -> RefusedPage:
    body = synapse.get(QUARANTINE, params={"from": offset, "limit": limit})
    next_token = body.get("next_token")
    return RefusedPage(
        records=[
            RefusedFile(
                record_id=row["record_id"],
                media=row["media"],
                kind=row.get("kind", "upload"),
                user_id=row.get("user_id"),
                signature=row.get("signature", ""),
                sha256=row.get("sha256", ""),
                detected_ts=int(row.get("detected_ts", 0)),
            )
            for row in body.get("records", [])
        ],
        total=int(body.get("total", 0)),
        offset=offset,
        next_offset=int(next_token) if next_token is not None else None,
    )


def allowlist(synapse: SynapseClient) -> DomainAllowlist:
    """The allowlist as the module enforces it right now."""
    return DomainAllowlist(entry.entry for entry in list_domains(synapse))
