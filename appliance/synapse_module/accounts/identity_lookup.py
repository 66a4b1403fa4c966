# SPDX-License-Identifier: AGPL-3.0-or-later
"""Tchap's domain lookup: ``GET /_matrix/identity/api/v1/info?medium=email&address=...``.

Tchap clients ask it before registering, to learn which homeserver an address belongs to.
Answers, as Tchap's do (extra keys are ignored by its clients):

* an allowed address: ``{"hs": "<server_name>"}``;
* a valid address of another domain: ``{"hs": "<server_name>", "requires_invite": true,
  "reason": "..."}``; Tchap sends externals to a separate server, here they join this one by
  invitation.  ``reason`` names the domain: it is the one place a client can learn it, since
  Synapse's own refusal of the verification mail has a fixed message;
* in a network of appliances (``federation.peers``), an address of a domain a peer owns:
  ``{"hs": "<peer's server_name>", "base_url": "<peer's URL>"}``, the server that holds its
  account; an address of no server's domain, when the network has an externals' server:
  ``{"hs": "<externals' server>", "base_url": ..., "requires_invite": true, "reason": ...}``;
* an address that cannot be used: 400 ``M_INVALID_PARAM`` saying why;
* the allowlist cannot be read: 503, so that nobody is told "allowed" or "invite" wrongly.

No token is needed: a client calls it before the account exists.  It says nothing about which
addresses have an account.
"""

from __future__ import annotations

from synapse.module_api import DirectServeJsonResource, ModuleApi, SynapseRequest
from synapse.module_api.errors import Codes, SynapseError

from appliance.synapse_module.accounts.registration import AllowlistSource, Verdict, decide
from appliance.synapse_module.admin_api.request_args import query_values
from appliance.synapse_module.federation.peers import Network

INFO_PATH = "/_matrix/identity/api/v1/info"
NEEDS_INVITE = "an address of this domain can only join by invitation, on the externals' server"


class IdentityInfoResource(DirectServeJsonResource):
    def __init__(
        self, api: ModuleApi, allowlist: AllowlistSource, network: Network | None = None
    ) -> None:
        super().__init__()
        self._api = api
        self._allowlist = allowlist
        self._network = network

    def register(self) -> None:
        """Serve INFO_PATH (on every process: any may receive the request)."""
        self._api.register_web_resource(INFO_PATH, self)

    async def _async_render_GET(self, request: SynapseRequest) -> tuple[int, dict]:
        medium = _query_value(request, "medium")
        if medium != "email":
            raise SynapseError(
                400, "Only email addresses can be looked up (medium=email)", Codes.INVALID_PARAM
            )
        address = _query_value(request, "address")
        server_name = self._api.server_name
        admission = decide(address, self._allowlist(), server_name=server_name)
        if admission.verdict is Verdict.ADMITTED:
            return 200, {"hs": server_name}
        if admission.verdict is Verdict.NOT_ALLOWED and admission.email is not None:
            return 200, self._elsewhere(admission.email.domain, admission.reason)
        if admission.verdict is Verdict.UNAVAILABLE:
            raise SynapseError(503, admission.reason, Codes.UNKNOWN)
        raise SynapseError(400, admission.reason, Codes.INVALID_PARAM)

    def _elsewhere(self, domain: str, reason: str) -> dict:
        """The answer for an address of a domain this server does not hold."""
        here = {"hs": self._api.server_name, "requires_invite": True, "reason": reason}
        if self._network is None:
            return here
        if owner := self._network.owner_of(domain):
            return {"hs": owner.server_name, "base_url": owner.base_url}
        if externals := self._network.externals_server:
            reason = f"the domain {domain} belongs to no server of the network: {NEEDS_INVITE}"
            server = {"hs": externals.server_name, "base_url": externals.base_url}
            return {**server, "requires_invite": True, "reason": reason}
        return here


def _query_value(request: SynapseRequest, name: str) -> str:
    values = query_values(request, name)
    if not values:
        raise SynapseError(400, f"Missing query parameter {name!r}", Codes.MISSING_PARAM)
    if len(values) > 1:
        raise SynapseError(400, f"Give the query parameter {name!r} once", Codes.INVALID_PARAM)
    try:
        return values[0].decode("utf-8")
    except UnicodeDecodeError:
        raise SynapseError(
            400, f"The query parameter {name!r} is not valid UTF-8", Codes.INVALID_PARAM
        ) from None
