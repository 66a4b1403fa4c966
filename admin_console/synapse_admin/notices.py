# SPDX-License-Identifier: AGPL-3.0-or-later
"""Server notices through Synapse's Admin API: one message to one user, from the notices
account (homeserver.yaml's server_notices), in their notices room."""

from __future__ import annotations

from html import escape

from admin_console.synapse_admin.client import SynapseClient


def bilingual_content(text_fr: str, text_en: str) -> dict:
    """One message in both languages, French first; each part marked with its language so a
    screen reader reads it with the right voice."""

    def html(text: str) -> str:
        return escape(text).replace("\n", "<br>")

    return {
        "msgtype": "m.text",
        "body": f"{text_fr}\n\n—\n\n{text_en}",
        "format": "org.matrix.custom.html",
        "formatted_body": f'<div lang="fr">{html(text_fr)}</div><hr><div lang="en">'
        f"{html(text_en)}</div>",
    }


def send(synapse: SynapseClient, user_id: str, content: dict) -> str:
    """Send; return the event ID."""
    body = synapse.post(
        "/_synapse/admin/v1/send_server_notice", {"user_id": user_id, "content": content}
    )
    return str(body.get("event_id", ""))
