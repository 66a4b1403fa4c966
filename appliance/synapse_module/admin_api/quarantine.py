# SPDX-License-Identifier: AGPL-3.0-or-later
"""Admin endpoint listing refused files: ``GET /_synapse/client/appliance/v1/quarantine``.

Query: ``from`` (offset, default 0) and ``limit`` (1-1000, default 100), as in Synapse's own
Admin API. Answer, newest first::

    {"records": [{"record_id", "sha256", "media", "kind", "user_id", "signature",
                  "signature_version", "detected_ts"}], "total": N, "next_token": "<from>"}

``next_token`` is present only when there is a next page. ``media`` is the file's mxc:// URI
(a refused file was never stored, so it cannot be downloaded). ``user_id`` is the user whose
request brought the file in (the uploader for uploads), or null when unknown.
Every call needs a server admin's access token (see :mod:`.admin_auth`). Until the module has
created its tables (at start-up), the answer is 503 M_UNKNOWN: try again shortly.
"""

from __future__ import annotations

from synapse.module_api import DirectServeJsonResource, ModuleApi, SynapseRequest
from synapse.module_api.errors import Codes, SynapseError

from appliance.synapse_module.admin_api.auth import require_server_admin
from appliance.synapse_module.admin_api.request_args import integer_arg
from appliance.synapse_module.media.scan_store import ScanStore, TablesNotReady

QUARANTINE_PATH = "/_synapse/client/appliance/v1/quarantine"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class QuarantineResource(DirectServeJsonResource):
    def __init__(self, api: ModuleApi, store: ScanStore) -> None:
        super().__init__()
        self._api = api
        self._store = store

    def register(self) -> None:
        """Serve QUARANTINE_PATH (on every process: any may receive the request)."""
        self._api.register_web_resource(QUARANTINE_PATH, self)

    async def _async_render_GET(self, request: SynapseRequest) -> tuple[int, dict]:
        await require_server_admin(self._api, request)
        offset = integer_arg(request, "from", 0, minimum=0)
        limit = integer_arg(request, "limit", DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT)
        try:
            records, total = await self._store.list_quarantine(offset, limit)
        except TablesNotReady:
            raise SynapseError(
                503, "The quarantine log is not ready yet; try again shortly", Codes.UNKNOWN
            ) from None
        body: dict = {"records": [record.to_json() for record in records], "total": total}
        if offset + limit < total:
            body["next_token"] = str(offset + limit)
        return 200, body
