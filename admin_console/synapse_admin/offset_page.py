# SPDX-License-Identifier: AGPL-3.0-or-later
"""One page of a list that Synapse (or the module) pages by offset: `from`, `limit`, a total.

The Admin API's room list and the module's quarantine and allowlist all answer this way, each
with its own key for the rows and for the next page's offset; `offset_page` reads any of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class OffsetPage(Generic[T]):
    rows: list[T]
    total: int  # rows matching, on every page
    offset: int
    next_offset: int | None  # None on the last page


def offset_page(
    body: dict,
    rows_key: str,
    parse: Callable[[dict], T],
    offset: int,
    *,
    total_key: str = "total",
    next_key: str = "next_token",
) -> OffsetPage[T]:
    next_token = body.get(next_key)
    return OffsetPage(
        rows=[parse(row) for row in body.get(rows_key, [])],
        total=int(body.get(total_key, 0)),
        offset=offset,
        next_offset=int(next_token) if next_token is not None else None,
    )
