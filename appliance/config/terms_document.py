# SPDX-License-Identifier: AGPL-3.0-or-later
"""The operator's terms of use (`terms.document`), read for rendering into Synapse's consent
templates.

The document is an HTML fragment. Synapse renders the consent templates with Jinja2 itself,
so braces are turned into HTML entities: the text shows the same, and nothing in it can be
taken for a template instruction.
"""

from __future__ import annotations

from appliance.config.settings import Settings, SettingsError

KEY = "terms.document"


class TermsDocumentError(SettingsError):
    """The document cannot be used (as any settings problem: the key and the reason)."""

    def __init__(self, problem: str):
        super().__init__("the settings", [problem])


def read_terms_document(settings: Settings) -> str | None:
    """The document's HTML, safe to place in a Synapse template; None without terms."""
    if settings.terms is None:
        return None
    path = settings.terms.document
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or error
        raise TermsDocumentError(f"{KEY}: {path} cannot be read: {reason}") from None
    if not text.strip():
        raise TermsDocumentError(f"{KEY}: {path} is empty")
    return text.replace("{", "&#123;").replace("}", "&#125;")


def check_terms_document(settings: Settings) -> list[str]:
    """Preflight: the problems with the document (none when it can be rendered)."""
    try:
        read_terms_document(settings)
    except TermsDocumentError as error:
        return error.problems
    return []
