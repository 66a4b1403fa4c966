# SPDX-License-Identifier: AGPL-3.0-or-later
"""Which users make up one page of the admin user list: user IDs in order, by keyset.

A page starts strictly after (or, going back, strictly before) a user ID and nothing is
counted: a page of the user list reads a page's worth of an index, however many users the
server has.  Users come from:

* no search: the users table in the order of its unique index on ``name``, read from the
  page's start, ``WHERE name > ? ORDER BY name LIMIT ?``;
* ``@...``: a Matrix ID prefix, a range on that same index;
* text with an ``@`` inside: an email address prefix, a range on ``user_threepids``' index on
  ``(medium, address)``;
* other text: a localpart prefix (as ``@...``) and the users with a word starting with each
  word of the text in their display name or user ID, through Synapse's user directory search
  table (FTS4 on SQLite, ``tsvector`` on PostgreSQL); both sources are merged in ID order;
* ``kind=externals`` without search: the module's record of externals.

The last three find a set of matches through their own index, which is sorted here, then
kept to the kind by the users table's index, a page's worth at a time: their cost grows with
the number of matches (the users of a common word, every external), not with the number of
users.  Fetching the whole set, rather than ``ORDER BY ... LIMIT`` in SQL, keeps PostgreSQL
from walking an index in ID order through every row when it underestimates how few match.
The user directory leaves out deactivated users, and deactivation removes their addresses:
those are found by their ID only.
``kind=admins`` and ``kind=deactivated`` read the module's partial indexes on ``users(name)``
(:data:`.synapse_internals.USERS_INDEXES`), which hold only the admins or only the deactivated
users, in ID order: a page of the few admins reads a page's worth of them, not every user
before them.

These are Synapse's own tables, which the module API does not expose: the Admin API's user
list counts every matching user and pages by offset, which grows with the server.  The SQL that
reads them is in :mod:`.synapse_internals` (``user_ids_in_range_txn`` and the functions after
it), whose start-up check verifies every table and column it names; this module plans the page.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from synapse.module_api import LoggingTransaction

from appliance.synapse_module.synapse_internals import (
    USER_KINDS,
    user_ids_in_range_txn,
    user_ids_with_email_in_txn,
    user_ids_with_words_txn,
    users_of_kind_txn,
)

KINDS = tuple(USER_KINDS)
MAX_SEARCH_WORDS = 10
_WORD = re.compile(r"[^\W_]+")


@dataclass(frozen=True)
class Position:
    """Where a page starts: strictly after (forward) or strictly before (backward) a user ID."""

    user_id: str
    forward: bool = True

    def admits(self, user_id: str) -> bool:
        return user_id > self.user_id if self.forward else user_id < self.user_id


@dataclass(frozen=True)
class IdRange:
    """Users of the users table in the order of its index on ``name``: those whose ID lies in
    bounds (``low <= ID < high``), or every user (None)."""

    bounds: tuple[str, str] | None = None


@dataclass(frozen=True)
class Matches:
    """A set of user IDs found through another table's index (``find_txn`` reads them)."""

    find_txn: Callable[[LoggingTransaction], list[str]]


Source = IdRange | Matches
EVERYONE = IdRange()


def _externals_txn(txn: LoggingTransaction) -> list[str]:
    txn.execute("SELECT user_id FROM appliance_externals")  # the module's own record
    return [row[0] for row in txn.fetchall()]


EXTERNALS = Matches(_externals_txn)


def prefix_range(prefix: str) -> tuple[str, str]:
    """``(low, high)`` such that ``low <= text < high`` holds exactly for text starting with
    prefix, in code point order (Synapse requires the C collation on PostgreSQL)."""
    following = ord(prefix[-1]) + 1
    if following > sys.maxunicode:  # a noncharacter: nothing real comes after it
        return prefix, prefix
    if 0xD800 <= following <= 0xDFFF:  # surrogates cannot be stored: skip them
        following = 0xE000
    return prefix, prefix[:-1] + chr(following)


def id_prefix(prefix: str) -> IdRange:
    return IdRange(prefix_range(prefix))


def email_prefix(prefix: str) -> Matches:
    low, high = prefix_range(prefix)
    return Matches(lambda txn: user_ids_with_email_in_txn(txn, low, high))


def search_words(text: str) -> list[str]:
    """The words of text as Synapse indexes them: lower case, NFKC, letters and digits."""
    normalised = unicodedata.normalize("NFKC", text.lower())
    return _WORD.findall(normalised)[:MAX_SEARCH_WORDS]


def directory_words(words: list[str]) -> Matches:
    """Users whose directory entry has a word starting with each of words."""
    return Matches(lambda txn: user_ids_with_words_txn(txn, words))


def sources_for(search: str, kind: str) -> list[Source]:
    text = search.strip()
    if not text:
        return [EXTERNALS if kind == "externals" else EVERYONE]
    if text.startswith("@"):
        return [id_prefix(text.lower())]
    if "@" in text:
        return [email_prefix(text.lower())]
    sources: list[Source] = [id_prefix("@" + text.lower())]
    words = search_words(text)
    if words:
        sources.append(directory_words(words))
    return sources


def page_of_user_ids_txn(
    txn: LoggingTransaction, search: str, kind: str, position: Position | None, limit: int
) -> list[str]:
    """Up to limit + 1 user IDs from position on, in the direction of position (so that the
    caller knows whether there is more), merged from every source of the search."""
    position = position or Position("")  # after the empty string: from the very first
    found: set[str] = set()
    for source in sources_for(search, kind):
        if isinstance(source, IdRange):
            found.update(
                user_ids_in_range_txn(
                    txn, source.bounds, kind, position.user_id, position.forward, limit + 1
                )
            )
        else:
            found.update(_matches_page_txn(txn, source, kind, position, limit + 1))
    return sorted(found, reverse=not position.forward)[: limit + 1]


def _matches_page_txn(
    txn: LoggingTransaction, source: Matches, kind: str, position: Position, limit: int
) -> list[str]:
    candidates = sorted(
        {user_id for user_id in source.find_txn(txn) if position.admits(user_id)},
        reverse=not position.forward,
    )
    kept: list[str] = []
    for start in range(0, len(candidates), limit):
        chunk = candidates[start : start + limit]
        of_kind = users_of_kind_txn(txn, chunk, kind)
        kept += [user_id for user_id in chunk if user_id in of_kind]
        if len(kept) >= limit:
            break
    return kept[:limit]
