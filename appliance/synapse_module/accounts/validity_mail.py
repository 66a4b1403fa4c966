# SPDX-License-Identifier: AGPL-3.0-or-later
"""The renewal mail and the page its link opens, in French and English.

The templates live with Synapse's other mails (``templates/synapse/email/account_renewal*``),
in the appliance's look.  Sending is bounded as for invitation mails
(:data:`~appliance.synapse_module.externals.invitation_mail.SEND_TIMEOUT_SECONDS`): a relay that
never answers must not hold the periodic check forever.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote

from synapse.module_api import ModuleApi, make_deferred_yieldable, run_in_background
from twisted.internet import reactor

from appliance.synapse_module.externals.invitation_mail import SEND_TIMEOUT_SECONDS

MAIL_HTML = "account_renewal.html"
MAIL_TEXT = "account_renewal.txt"
PAGE = "account_renewal_page.html"
RENEW_PATH = "/_synapse/client/appliance/v1/renew"


def when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


class RenewalMail:
    def __init__(self, api: ModuleApi) -> None:
        self._api = api
        # Read at start: a missing template stops Synapse with its name, not a later mail.
        self._html, self._text, self._page = api.read_templates([MAIL_HTML, MAIL_TEXT, PAGE])

    def link(self, token: str) -> str:
        return f"{self._api.public_baseurl.rstrip('/')}{RENEW_PATH}?token={quote(token)}"

    async def send(self, user_id: str, expiration_ts: int, token: str) -> bool:
        """Mail every address of the account; False if it has none."""
        addresses = [
            threepid["address"]
            for threepid in await self._api.get_threepids_for_user(user_id)
            if threepid["medium"] == "email"
        ]
        variables = {
            "server_name": self._api.server_name,
            "user_id": user_id,
            "expires": when(expiration_ts),
            "link": self.link(token),
        }
        subject = f"[{self._api.server_name}] Renouvelez votre compte / Renew your account"
        html, text = self._html.render(variables), self._text.render(variables)
        for address in addresses:
            sending = run_in_background(self._api.send_mail, address, subject, html, text)
            sending.addTimeout(SEND_TIMEOUT_SECONDS, reactor)
            await make_deferred_yieldable(sending)
        return bool(addresses)

    def page(self, state: str, *, token: str = "", expires: int | None = None) -> bytes:
        """The renewal page: ``confirm`` (a button, so that a mail scanner opening the link
        renews nobody), ``renewed`` or ``invalid``."""
        variables = {
            "server_name": self._api.server_name,
            "state": state,
            "token": token,
            "action": RENEW_PATH,
            "expires": when(expires) if expires is not None else "",
        }
        return self._page.render(variables).encode("utf-8")
