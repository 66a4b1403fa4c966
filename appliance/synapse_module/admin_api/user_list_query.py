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
list counts every matching user and pages by offset, which grows with the server.  Every
table and column read here is listed in :data:`.synapse_internals.SYNAPSE_COLUMNS` and checked
when the module loads.  SQL has ``?`` placeholders only (Synapse converts them for
PostgreSQL), so no literal question mark or percent sign may appear in it.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from synapse.module_api import LoggingTransaction

from appliance.synapse_module.synapse_internals import is_postgres

KINDS = ("active", "agents", "externals", "admins", "deactivated", "all")
MAX_SEARCH_WORDS = 10

EXTERNAL = "EXISTS (SELECT 1 FROM appliance_externals x WHERE x.user_id = u.name)"
_KIND_CONDITIONS = {
    "active": "u.deactivated = 0",
    "agents": f"u.deactivated = 0 AND NOT {EXTERNAL}",
    "externals": f"u.deactivated = 0 AND {EXTERNAL}",
    "admins": "u.admin = 1",
    "deactivated": "u.deactivated = 1",
    "all": "1 = 1",
}
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
    """Users of the users table (``u``) in the order of its index on ``name``."""

    condition: str = "1 = 1"
    args: tuple = ()


@dataclass(frozen=True)
class Matches:
    """A set of user IDs found through another table's index (``sql`` selects them)."""

    sql: str
    args: tuple = ()


Source = IdRange | Matches
EVERYONE = IdRange()
EXTERNALS = Matches("SELECT user_id FROM appliance_externals")


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
    return IdRange("u.name >= ? AND u.name < ?", prefix_range(prefix))


def email_prefix(prefix: str) -> Matches:
    return Matches(
        "SELECT user_id FROM user_threepids WHERE medium = 'email' AND address >= ?"
        " AND address < ?",
        prefix_range(prefix),
    )


def search_words(text: str) -> list[str]:
    """The words of text as Synapse indexes them: lower case, NFKC, letters and digits."""
    normalised = unicodedata.normalize("NFKC", text.lower())
    return _WORD.findall(normalised)[:MAX_SEARCH_WORDS]


def directory_words(words: Sequence[str], postgres: bool) -> Matches:
    """Users whose directory entry (user ID and display name) has a word starting with each
    of words.  Words are letters and digits only, so they need no quoting in either syntax."""
    if postgres:
        return Matches(
            "SELECT user_id FROM user_directory_search WHERE vector @@ to_tsquery('simple', ?)",
            (" & ".join(f"{word}:*" for word in words),),
        )
    return Matches(
        "SELECT user_id FROM user_directory_search WHERE value MATCH ?",
        (" ".join(f"{word}*" for word in words),),
    )


def sources_for(search: str, kind: str, postgres: bool) -> list[Source]:
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
        sources.append(directory_words(words, postgres))
    return sources


def page_of_user_ids_txn(
    txn: LoggingTransaction, search: str, kind: str, position: Position | None, limit: int
) -> list[str]:
    """Up to limit + 1 user IDs from position on, in the direction of position (so that the
    caller knows whether there is more), merged from every source of the search."""
    position = position or Position("")  # after the empty string: from the very first
    postgres = is_postgres(txn)
    found: set[str] = set()
    for source in sources_for(search, kind, postgres):
        if isinstance(source, IdRange):
            found.update(_range_page_txn(txn, source, kind, position, limit + 1))
        else:
            found.update(_matches_page_txn(txn, source, kind, position, limit + 1))
    return sorted(found, reverse=not position.forward)[: limit + 1]


def _range_page_txn(
    txn: LoggingTransaction, source: IdRange, kind: str, position: Position, limit: int
) -> list[str]:
    txn.execute(
        f"SELECT u.name FROM users u WHERE {source.condition}"
        f" AND u.name {'>' if position.forward else '<'} ? AND u.is_guest = 0"
        f" AND {_KIND_CONDITIONS[kind]}"
        f" ORDER BY u.name {'ASC' if position.forward else 'DESC'} LIMIT ?",
        source.args + (position.user_id, limit),
    )
    return [row[0] for row in txn.fetchall()]


def _matches_page_txn(
    txn: LoggingTransaction, source: Matches, kind: str, position: Position, limit: int
) -> list[str]:
    txn.execute(source.sql, source.args)
    candidates = sorted(
        {row[0] for row in txn.fetchall() if position.admits(row[0])},
        reverse=not position.forward,
    )
    kept: list[str] = []
    for start in range(0, len(candidates), limit):
        kept += _of_kind_txn(txn, candidates[start : start + limit], kind)
        if len(kept) >= limit:
            break
    return kept[:limit]


def _of_kind_txn(txn: LoggingTransaction, user_ids: list[str], kind: str) -> list[str]:
    """The users among user_ids (in their order) that are local, not guests, of the kind."""
    marks = ", ".join("?" for _ in user_ids)
    txn.execute(
        f"SELECT u.name FROM users u WHERE u.name IN ({marks}) AND u.is_guest = 0"
        f" AND {_KIND_CONDITIONS[kind]}",
        tuple(user_ids),
    )
    kept = {row[0] for row in txn.fetchall()}
    return [user_id for user_id in user_ids if user_id in kept]
