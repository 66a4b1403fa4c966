# SPDX-License-Identifier: AGPL-3.0-or-later
"""The appliance module's own endpoints.

Its admin endpoints (`/_synapse/client/appliance/v1/`) cover what Synapse's Admin API does not:
the allowlist of email domains (paged and searched there, each entry with its number of
accounts) and the files the antivirus refused; same service token, same errors as the Admin
API. Its Tchap domain lookup (`/_matrix/identity/api/v1/info`) answers for
one address whether its domain is allowed, without the console downloading the allowlist.
"""

from __future__ import annotations

from dataclasses import dataclass

from admin_console.synapse_admin.client import SynapseClient, SynapseRefused, segment
from admin_console.synapse_admin.offset_page import OffsetPage, offset_page

DOMAINS = "/_synapse/client/appliance/v1/domains"
QUARANTINE = "/_synapse/client/appliance/v1/quarantine"
DOMAIN_LOOKUP = "/_matrix/identity/api/v1/info"


@dataclass(frozen=True)
class DomainEntry:
    entry: str  # "ac-paris.fr" or "*.gouv.fr"
    added_at: int | None  # ms
    added_by: str | None
    accounts: int | None  # active accounts with an address it admits; None: not counted

    @classmethod
    def from_json(cls, row: dict) -> DomainEntry:
        return cls(row["entry"], row.get("added_at"), row.get("added_by"), row.get("accounts"))


@dataclass(frozen=True)
class RefusedFile:
    record_id: str
    media: str  # "local/<id>" or "<server>/<id>"
    kind: str  # upload, remote, thumbnail, url_preview
    user_id: str | None
    signature: str
    sha256: str
    detected_ts: int  # ms

    @classmethod
    def from_json(cls, row: dict) -> RefusedFile:
        return cls(
            record_id=row["record_id"],
            media=row["media"],
            kind=row.get("kind", "upload"),
            user_id=row.get("user_id"),
            signature=row.get("signature", ""),
            sha256=row.get("sha256", ""),
            detected_ts=int(row.get("detected_ts", 0)),
        )


def list_domains(
    synapse: SynapseClient, search: str = "", offset: int = 0, limit: int = 50
) -> OffsetPage[DomainEntry]:
    """One page of the entries containing search (all without one), in order."""
    params: dict = {"from": offset, "limit": limit}
    if search:
        params["q"] = search
    body = synapse.get(DOMAINS, params=params)
    return offset_page(body, "domains", DomainEntry.from_json, offset)


def add_domain(synapse: SynapseClient, entry: str) -> tuple[str, bool]:
    """Add an entry; return (its normalised form, whether it was new)."""
    body = synapse.put(f"{DOMAINS}/{segment(entry)}")
    return body["entry"], bool(body.get("created"))


def remove_domain(synapse: SynapseClient, entry: str) -> None:
    synapse.delete(f"{DOMAINS}/{segment(entry)}")


def list_refused(
    synapse: SynapseClient, offset: int = 0, limit: int = 50
) -> OffsetPage[RefusedFile]:
    body = synapse.get(QUARANTINE, params={"from": offset, "limit": limit})
    return offset_page(body, "records", RefusedFile.from_json, offset)


def email_domain_allowed(synapse: SynapseClient, address: str) -> bool:
    """Whether the module lets address register (its domain is allowed), as it decides now.

    An address the module finds unusable (400 M_INVALID_PARAM) is not allowed. The lookup is
    public (Tchap clients call it before their account exists), so no token is sent.
    """
    try:
        body = synapse.get(
            DOMAIN_LOOKUP, params={"medium": "email", "address": address}, token=False
        )
    except SynapseRefused as error:
        if error.status == 400 and error.errcode == "M_INVALID_PARAM":
            return False
        raise
    # Fail closed: only the answer for an allowed address, {"hs": ...} alone, says yes.
    return "hs" in body and not body.get("requires_invite", False)
