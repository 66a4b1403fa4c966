"""Offset pagination as Synapse's Admin API does it (`from`, `limit`), for every list page."""

from __future__ import annotations

from flask import request, url_for

MAX_OFFSET = 10_000_000


def offset_arg(name: str = "from") -> int:
    """The page's offset from the query string; anything odd means the first page."""
    try:
        value = int(request.args.get(name, "0"))
    except ValueError:
        return 0
    return min(max(value, 0), MAX_OFFSET)


def page_url(offset: int) -> str:
    """This page's URL with every query argument kept but the offset."""
    args = request.args.to_dict()
    args["from"] = max(offset, 0)
    return url_for(request.endpoint, **(request.view_args or {}), **args)
