# SPDX-License-Identifier: AGPL-3.0-or-later
"""The invitation mail and the page its link opens, in French and English.

The templates live with Synapse's other mails (``templates/synapse/email/``, rendered into
Synapse's ``custom_template_directory``), so that they share their base layout and an operator
overrides them the same way.

Sending is bounded (:data:`SEND_TIMEOUT_SECONDS`): Synapse's mailer has a connect timeout only,
so a relay that accepts the connection and then never answers would hold the inviting client's
request forever; past the bound the send fails, and the invitation is not kept (the caller
answers 502).

The mail goes out in the server's name, so what an agent chose (the room's name, the inviter's
display name) never reaches it as such: :func:`quoted_text` makes it one line (no header or
line can be injected), without links (no scheme, no dot inside a word: no mail client turns
it into a link) and at most :data:`MAX_QUOTED` characters; the templates show it between
quotes, as someone else's words. The subject carries only the server's name and the quoted room
name.

An address of a peer's domain registers on that peer, never here: its mail and page name that
server (``account_server``, ``homeserver_url``) instead of this one.
"""

from __future__ import annotations

import re
import unicodedata

from synapse.module_api import ModuleApi, make_deferred_yieldable, run_in_background
from twisted.internet import reactor

from appliance.synapse_module.externals.store import Invitation
from appliance.synapse_module.federation.peers import Peer

MAIL_HTML = "appliance_invitation.html"
MAIL_TEXT = "appliance_invitation.txt"
PAGE = "appliance_invitation_page.html"
PAGE_PATH = "/_synapse/client/appliance/v1/invitation"

MAX_QUOTED = 60
# Longer than a relay that answers ever takes (Synapse's own connect timeout is 30 s, but a
# relay on loopback or the LAN answers in milliseconds), shorter than a client gives up.
SEND_TIMEOUT_SECONDS = 15.0
ELLIPSIS = "…"
# A middle dot in place of a full stop: read as a dot by a person, never as a domain name's by a
# mail client (nor by IDNA, which maps other dot-like characters such as U+2024 to a full stop).
SAFE_DOT = "·"
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*:/+", re.IGNORECASE)  # https://, file:///, ...
# Full stops that a link finder may take for a host name's: any between two visible characters
# (a letter, a digit, an accent, a hyphen...), of any script: NFKC has already folded the
# fullwidth and small ones into "." and the halfwidth ideographic one into "。". A dot that ends
# a sentence or a run of dots ("...") stays; a run inside a word ("a..b") goes as a whole.
_DOTS = re.compile(r"(?<=\S)[.。]+(?=[^\s.。])")


def quoted_text(text: str, limit: int = MAX_QUOTED) -> str:
    """Text chosen by an agent, made fit for a mail in the server's name: one line of at most
    `limit` characters, with no link."""
    # Compatibility forms folded first (fullwidth letters, dots and slashes become plain ones),
    # so that what follows sees what a mail client would.
    text = unicodedata.normalize("NFKC", text)
    # Controls (CR, LF, tab), line and paragraph separators, invisible format characters
    # (bidirectional overrides, zero-width joiners) and unassigned ones become spaces.
    text = "".join(" " if unicodedata.category(char)[0] in "CZ" else char for char in text)
    text = _DOTS.sub(lambda run: SAFE_DOT * len(run.group()), _SCHEME.sub(" ", text))
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + ELLIPSIS
    return text


class InvitationMail:
    def __init__(self, api: ModuleApi) -> None:
        self._api = api
        # Read at start: a missing template stops Synapse with its name, not a later mail.
        self._html, self._text, self._page = api.read_templates([MAIL_HTML, MAIL_TEXT, PAGE])

    def link(self, invitation: Invitation) -> str:
        return f"{self._api.public_baseurl.rstrip('/')}{PAGE_PATH}?id={invitation.link_id}"

    def _variables(
        self, invitation: Invitation, room_name: str, inviter_name: str, home: Peer | None
    ) -> dict:
        """home: the peer the address registers on, None for this server."""
        return {
            "server_name": self._api.server_name,
            "account_server": home.server_name if home else self._api.server_name,
            "app_name": self._api.email_app_name,
            "homeserver_url": home.base_url if home else self._api.public_baseurl,
            "address": invitation.address,
            "room_name": quoted_text(room_name) or quoted_text(invitation.room_id),
            "inviter_name": quoted_text(inviter_name) or quoted_text(invitation.inviter),
            "link": self.link(invitation),
            "pending": invitation.pending,
        }

    async def send(
        self, invitation: Invitation, room_name: str, inviter_name: str, home: Peer | None = None
    ) -> None:
        variables = self._variables(invitation, room_name, inviter_name, home)
        subject = f"[{self._api.server_name}] Invitation « {variables['room_name']} »"
        sending = run_in_background(
            self._api.send_mail,
            invitation.address,
            subject,
            self._html.render(variables),
            self._text.render(variables),
        )
        # Synapse runs on Twisted's global reactor; past the bound, the send is cancelled and
        # twisted.internet.defer.TimeoutError raised.
        sending.addTimeout(SEND_TIMEOUT_SECONDS, reactor)
        await make_deferred_yieldable(sending)

    def page(
        self, invitation: Invitation, room_name: str, inviter_name: str, home: Peer | None = None
    ) -> str:
        return self._page.render(self._variables(invitation, room_name, inviter_name, home))
