# SPDX-License-Identifier: AGPL-3.0-or-later
"""Offset pagination as Synapse's Admin API does it (`from`, `limit`), for every list page."""

from __future__ import annotations

from urllib.parse import urlencode

from flask import request, url_for

MAX_OFFSET = 10_000_000
OFFSET_ARG = "from"


def offset_arg(name: str = OFFSET_ARG) -> int:
    """The page's offset from the query string; anything odd means the first page."""
    try:
        value = int(request.args.get(name, "0"))
    except ValueError:
        return 0
    return min(max(value, 0), MAX_OFFSET)


def this_page_url(**changes: str | int) -> str:
    """This page's URL with its query kept, except the arguments in changes, which replace it.

    The query goes through urlencode, never through url_for's keyword arguments: a query key
    such as `endpoint` or `_external` would otherwise change the URL built, or fail.
    """
    kept = [(key, value) for key, value in request.args.items(multi=True) if key not in changes]
    query = urlencode(kept + [(key, str(value)) for key, value in changes.items()])
    return f"{url_for(request.endpoint, **(request.view_args or {}))}?{query}"


def page_url(offset: int) -> str:
    """This page's URL with every query argument kept but the offset."""
    return this_page_url(**{OFFSET_ARG: max(offset, 0)})
