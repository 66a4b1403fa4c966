# SPDX-License-Identifier: AGPL-3.0-or-later
"""Admin endpoints for the allowlist: ``/_synapse/client/appliance/v1/domains[/<entry>]``.

``GET    .../domains``           a page of the entries, in order (see below)
``GET    .../domains/<entry>``   one entry, or 404 ``M_NOT_FOUND``
``PUT    .../domains/<entry>``   add it: 201 if new, 200 if it was already there
``DELETE .../domains/<entry>``   remove it, or 404 ``M_NOT_FOUND``

The list takes ``q`` (entries containing it), ``from`` (offset, default 0) and ``limit``
(1-1000, default 100), as Synapse's own Admin API lists do, and answers::

    {"domains": [{"entry", "added_at", "added_by", "accounts"}], "total": N, "next_token": "<from>"}

``total`` counts the entries matching ``q``; ``next_token`` is there only when a next page is.
``accounts`` is how many accounts have an email address the entry admits (active accounts:
deactivation removes the addresses); it is counted for the entries of the page only.

``<entry>`` is a domain or a ``*.`` wildcard, percent-encoded as any path segment; it is
normalised (``AC-Paris.FR`` is ``ac-paris.fr``) and a bad one gets 400 ``M_INVALID_PARAM`` with
the reason.  A change is in effect in this process when the answer is sent, and in every other
Synapse process within :data:`~appliance.synapse_module.accounts.domain_store.MAX_AGE_SECONDS`.
Every call needs a server admin's access token (see :mod:`.admin_auth`).
"""

from __future__ import annotations

import logging
from urllib.parse import unquote

from synapse.module_api import DirectServeJsonResource, ModuleApi, SynapseRequest
from synapse.module_api.errors import Codes, SynapseError

from appliance.addresses.domain_allowlist import InvalidDomainEntry, normalise_domain_entry
from appliance.synapse_module.accounts.domain_store import DomainStore
from appliance.synapse_module.admin_api.auth import require_server_admin
from appliance.synapse_module.admin_api.request_args import integer_arg, string_arg

logger = logging.getLogger(__name__)

DOMAINS_PATH = "/_synapse/client/appliance/v1/domains"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class DomainsResource(DirectServeJsonResource):
    # A leaf receives every path below DOMAINS_PATH, so that it can route /<entry> itself.
    isLeaf = True

    def __init__(self, api: ModuleApi, store: DomainStore) -> None:
        super().__init__()
        self._api = api
        self._store = store

    def register(self) -> None:
        """Serve DOMAINS_PATH (on every process: any may receive the request)."""
        self._api.register_web_resource(DOMAINS_PATH, self)

    async def _async_render_GET(self, request: SynapseRequest) -> tuple[int, dict]:
        await require_server_admin(self._api, request)
        raw = _raw_entry(request)
        if raw is None:
            return 200, await self._page(request)
        entry = _normalised(raw)
        found = await self._store.get(entry)
        if found is None:
            raise _not_listed(entry)
        return 200, found.as_json()

    async def _page(self, request: SynapseRequest) -> dict:
        # Entries are stored in lower case (A-labels for international domains).
        search = string_arg(request, "q").strip().lower()
        offset = integer_arg(request, "from", 0, minimum=0)
        limit = integer_arg(request, "limit", DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT)
        page = await self._store.page(search, offset, limit)
        body: dict = {
            "domains": [{**e.as_json(), "accounts": page.accounts[e.entry]} for e in page.entries],
            "total": page.total,
        }
        if offset + limit < page.total:
            body["next_token"] = str(offset + limit)
        return body

    async def _async_render_PUT(self, request: SynapseRequest) -> tuple[int, dict]:
        admin = await require_server_admin(self._api, request)
        entry = _normalised(_required_entry(request))
        created = await self._store.add(entry, added_by=admin)
        if created:
            logger.info("allowlist: %s added %s", admin, entry)
        return (201 if created else 200), {"entry": entry, "created": created}

    async def _async_render_DELETE(self, request: SynapseRequest) -> tuple[int, dict]:
        admin = await require_server_admin(self._api, request)
        entry = _normalised(_required_entry(request))
        if not await self._store.remove(entry):
            raise _not_listed(entry)
        logger.info("allowlist: %s removed %s", admin, entry)
        return 200, {"entry": entry, "deleted": True}


def _raw_entry(request: SynapseRequest) -> str | None:
    """The decoded ``<entry>`` segment, or None for the collection itself."""
    path = request.path.decode("ascii", errors="replace")
    if not path.startswith(DOMAINS_PATH):
        raise _unknown_path()
    # "" -> [""]; "/" -> ["", ""]; "/x" -> ["", "x"]; anything else is unknown.
    segments = path.removeprefix(DOMAINS_PATH).split("/")
    if segments in ([""], ["", ""]):
        return None
    if len(segments) != 2 or segments[0] or not segments[1]:
        raise _unknown_path()
    try:
        return unquote(segments[1], errors="strict")
    except UnicodeDecodeError:
        raise SynapseError(
            400, "The domain in the path is not valid percent-encoded UTF-8", Codes.INVALID_PARAM
        ) from None


def _unknown_path() -> SynapseError:
    return SynapseError(404, f"Unknown path below {DOMAINS_PATH}", Codes.UNRECOGNIZED)


def _required_entry(request: SynapseRequest) -> str:
    raw = _raw_entry(request)
    if raw is None:
        raise SynapseError(
            405, f"Name the domain in the path: {DOMAINS_PATH}/<domain>", Codes.UNRECOGNIZED
        )
    return raw


def _normalised(raw: str) -> str:
    try:
        return normalise_domain_entry(raw)
    except InvalidDomainEntry as error:
        raise SynapseError(400, str(error), Codes.INVALID_PARAM) from None


def _not_listed(entry: str) -> SynapseError:
    return SynapseError(404, f"{entry} is not on the list of allowed domains", Codes.NOT_FOUND)
