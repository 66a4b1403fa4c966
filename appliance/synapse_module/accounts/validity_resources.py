# SPDX-License-Identifier: AGPL-3.0-or-later
"""HTTP resources of account validity.

``GET /_synapse/client/appliance/v1/renew?token=...``: the page the renewal mail links to. It
asks for a click (a mail scanner that opens links must not use up the single-use link);
``POST`` of its form (``token``) renews the account, without signing in (an expired account
cannot), and says until when.  An unknown, used or expired link gets 404 and a page that says
so.

Admin endpoints (a server admin's token, see :mod:`..admin_api.auth`), under
``/_synapse/client/appliance/v1/account_validity``:

``GET  ...?user_id=@a:s&user_id=@b:s``  the expiry of each (at most 100): ``{"accounts": [...]}``
``GET  ...?expiring_within_ms=N[&limit=L]``  active accounts that expire within N ms (or have
        expired), soonest first
``GET  .../<user_id>``  one account's expiry and its log: ``{"account": {...} | null, "log"}``
``POST .../<user_id>``  ``{"action": "renew"}`` (a new period from now), ``{"action": "extend",
        "days": N}`` (N days more than its expiry, or than now if that has passed),
        ``{"action": "set", "expiration_ts": ms}``; each starts a new period (no reminder
        sent yet) and clears a deactivation for expiry, and answers ``{"account": {...}}``
``POST .../check``      run the periodic check now (safe beside the scheduled one)

Each account is ``{"user_id", "expiration_ts", "reminders_sent", "deactivated_ts", "expired",
"exempt"}``; an account that never expires has ``expiration_ts: null``.  Refusals: 400
``M_INVALID_PARAM`` / ``M_BAD_JSON`` naming what is wrong, 403 ``M_FORBIDDEN`` for a non-admin
or an exempt account, 404 ``M_NOT_FOUND`` for a user who is not on this server.
"""

from __future__ import annotations

from urllib.parse import unquote

from synapse.module_api import (
    DirectServeHtmlResource,
    DirectServeJsonResource,
    ModuleApi,
    SynapseRequest,
    parse_json_object_from_request,
)
from synapse.module_api.errors import Codes, SynapseError

from appliance.synapse_module.accounts.validity import AccountValidity
from appliance.synapse_module.accounts.validity_mail import RENEW_PATH, RenewalMail
from appliance.synapse_module.accounts.validity_schedule import MS
from appliance.synapse_module.accounts.validity_store import Validity
from appliance.synapse_module.admin_api.auth import require_server_admin
from appliance.synapse_module.admin_api.request_args import (
    MAX_INTEGER,
    integer_arg,
    query_values,
    string_arg,
)

VALIDITY_PATH = "/_synapse/client/appliance/v1/account_validity"
MAX_USERS = 100
MAX_EXTEND_DAYS = 3650
EXEMPT = "This account never expires (it is exempt from account validity)"


class RenewalPage(DirectServeHtmlResource):
    def __init__(self, api: ModuleApi, validity: AccountValidity, mail: RenewalMail) -> None:
        super().__init__()
        self._api = api
        self._validity = validity
        self._mail = mail

    def register(self) -> None:
        """Serve RENEW_PATH (on every process: any may receive the click)."""
        self._api.register_web_resource(RENEW_PATH, self)

    async def _async_render_GET(self, request: SynapseRequest) -> tuple[int, bytes]:
        token = string_arg(request, "token")
        store, now = self._validity.store, self._validity.now_ms()
        if not token or not await store.link_is_valid(token, now):
            return 404, self._mail.page("invalid")
        return 200, self._mail.page("confirm", token=token)

    async def _async_render_POST(self, request: SynapseRequest) -> tuple[int, bytes]:
        token = string_arg(request, "token")
        renewed = await self._validity.renew_by_link(token) if token else None
        if renewed is None:
            return 404, self._mail.page("invalid")
        return 200, self._mail.page("renewed", expires=renewed[1])


class ValidityResource(DirectServeJsonResource):
    # A leaf receives every path below VALIDITY_PATH, so that it can route /<user_id> itself.
    isLeaf = True

    def __init__(self, api: ModuleApi, validity: AccountValidity) -> None:
        super().__init__()
        self._api = api
        self._validity = validity

    def register(self) -> None:
        """Serve VALIDITY_PATH (on every process: any may receive the request)."""
        self._api.register_web_resource(VALIDITY_PATH, self)

    def _account(self, user_id: str, row: Validity | None) -> dict:
        exempt = self._validity.is_exempt(user_id)
        expiration = None if exempt or row is None else row.expiration_ts
        return {
            "user_id": user_id,
            "expiration_ts": expiration,
            "reminders_sent": row.reminders_sent if row else 0,
            "deactivated_ts": row.deactivated_ts if row else None,
            "expired": expiration is not None and self._validity.now_ms() >= expiration,
            "exempt": exempt,
        }

    async def _async_render_GET(self, request: SynapseRequest) -> tuple[int, dict]:
        await require_server_admin(self._api, request)
        user_id = _user_in_path(request)
        store = self._validity.store
        if user_id is not None:
            rows = await store.of_users([user_id])
            log = await store.log_of(user_id, 50)
            return 200, {
                "account": self._account(user_id, rows[0] if rows else None),
                "log": [entry.as_json() for entry in log],
            }
        if query_values(request, "expiring_within_ms"):
            within = integer_arg(request, "expiring_within_ms", 0, minimum=0)
            limit = integer_arg(request, "limit", 100, minimum=1, maximum=1000)
            rows = await store.expiring_before(self._validity.now_ms() + within, limit)
            return 200, {"accounts": [self._account(row.user_id, row) for row in rows]}
        user_ids = [value.decode("utf-8", "replace") for value in query_values(request, "user_id")]
        if not user_ids or len(user_ids) > MAX_USERS:
            raise SynapseError(
                400,
                f"give 1 to {MAX_USERS} user_id arguments, or expiring_within_ms",
                Codes.INVALID_PARAM,
            )
        found = {row.user_id: row for row in await store.of_users(user_ids)}
        return 200, {"accounts": [self._account(u, found.get(u)) for u in user_ids]}

    async def _async_render_POST(self, request: SynapseRequest) -> tuple[int, dict]:
        admin = await require_server_admin(self._api, request)
        user_id = _user_in_path(request)
        if user_id is None:
            raise SynapseError(404, "Give a user ID after the path", Codes.NOT_FOUND)
        if user_id == "check":
            await self._validity.check()
            return 200, {}
        if not self._api.is_mine(user_id) or await self._api.check_user_exists(user_id) is None:
            raise SynapseError(404, f"No account {user_id} on this server", Codes.NOT_FOUND)
        if self._validity.is_exempt(user_id):
            raise SynapseError(403, EXEMPT, Codes.FORBIDDEN)
        body = parse_json_object_from_request(request)
        action = body.get("action")
        if action == "renew":
            await self._validity.renew(user_id, event="renewed by an admin", actor=admin)
        elif action == "extend":
            days = body.get("days")
            if (
                not isinstance(days, int)
                or isinstance(days, bool)
                or not 1 <= days <= MAX_EXTEND_DAYS
            ):
                raise SynapseError(
                    400,
                    f"days must be a whole number from 1 to {MAX_EXTEND_DAYS}",
                    Codes.INVALID_PARAM,
                )
            current = await self._validity.store.expiration_of(user_id)
            base = max(current or 0, self._validity.now_ms())
            await self._validity.set_expiry(
                user_id, base + days * 86400 * MS, event=f"extended by {days} days", actor=admin
            )
        elif action == "set":
            expiration = body.get("expiration_ts")
            if (
                not isinstance(expiration, int)
                or isinstance(expiration, bool)
                or not 0 <= expiration <= MAX_INTEGER
            ):
                raise SynapseError(
                    400, "expiration_ts must be a time in milliseconds", Codes.INVALID_PARAM
                )
            await self._validity.set_expiry(user_id, expiration, event="set", actor=admin)
        else:
            raise SynapseError(400, "action must be renew, extend or set", Codes.INVALID_PARAM)
        rows = await self._validity.store.of_users([user_id])
        return 200, {"account": self._account(user_id, rows[0] if rows else None)}


def _user_in_path(request: SynapseRequest) -> str | None:
    path = request.path.decode("ascii", "replace")
    rest = path[len(VALIDITY_PATH) :].strip("/")
    return unquote(rest) if rest else None
