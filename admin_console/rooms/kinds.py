# SPDX-License-Identifier: AGPL-3.0-or-later
"""The kind of a room, in the appliance's terms, from Tchap's access rule and the join rule."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

KIND_LABELS = {
    "forum": _l("forum"),
    "private": _l("private"),
    "open_to_externals": _l("private, open to externals"),
    "direct": _l("direct chat"),
    "unknown": _l("not set"),
}


def room_kind(access_rule: str | None, join_rules: str | None) -> str:
    if join_rules == "public":
        return "forum"  # a forum keeps Tchap's "restricted" rule but anyone may join
    return {
        "restricted": "private",
        "unrestricted": "open_to_externals",
        "direct": "direct",
    }.get(access_rule or "", "unknown")
