"""The invitation mail and the page its link opens, in French and English.

The templates live with Synapse's other mails (``templates/synapse/email/``, rendered into
Synapse's ``custom_template_directory``), so that they share their base layout and an operator
overrides them the same way.
"""

from __future__ import annotations

from synapse.module_api import ModuleApi

from appliance.synapse_module.externals.store import Invitation

MAIL_HTML = "appliance_invitation.html"
MAIL_TEXT = "appliance_invitation.txt"
PAGE = "appliance_invitation_page.html"
PAGE_PATH = "/_synapse/client/appliance/v1/invitation"


class InvitationMail:
    def __init__(self, api: ModuleApi) -> None:
        self._api = api
        # Read at start: a missing template stops Synapse with its name, not a later mail.
        self._html, self._text, self._page = api.read_templates([MAIL_HTML, MAIL_TEXT, PAGE])

    def link(self, invitation: Invitation) -> str:
        return f"{self._api.public_baseurl.rstrip('/')}{PAGE_PATH}?id={invitation.link_id}"

    def _variables(self, invitation: Invitation, room_name: str, inviter_name: str) -> dict:
        return {
            "server_name": self._api.server_name,
            "app_name": self._api.email_app_name,
            "homeserver_url": self._api.public_baseurl,
            "address": invitation.address,
            "room_name": room_name,
            "inviter_name": inviter_name,
            "link": self.link(invitation),
            "pending": invitation.pending,
        }

    async def send(self, invitation: Invitation, room_name: str, inviter_name: str) -> None:
        variables = self._variables(invitation, room_name, inviter_name)
        subject = f"[{self._api.server_name}] {inviter_name} vous invite / invites you: {room_name}"
        await self._api.send_mail(
            invitation.address,
            subject,
            self._html.render(variables),
            self._text.render(variables),
        )

    def page(self, invitation: Invitation, room_name: str, inviter_name: str) -> str:
        return self._page.render(self._variables(invitation, room_name, inviter_name))
