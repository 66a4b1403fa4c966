"""Tchap-style Matrix identity derived from a verified professional address.

Localpart: ``pierre.dupont@ac-paris.fr`` -> ``pierre.dupont-ac-paris.fr``:
the normalised address with '@' replaced by '-', then escaped exactly like
Synapse's ``map_username_to_mxid_localpart`` (the spec's "mapping from other
character sets"): every byte outside ``a-z 0-9 . _ - /`` becomes ``=`` and two
lower-case hex digits (``+`` -> ``=2b``, ``'`` -> ``=27``, ``=`` -> ``=3d``), and
a leading ``_`` (reserved for application services) becomes ``=5f``.  '+' is
escaped even though newer Matrix grammars allow it, so the ID is valid under
the historical grammar that Synapse and older servers enforce.  Escaping
keeps distinct local parts distinct (it is reversible), but joining with '-'
is not injective (``a-b@c.fr`` and ``a@b-c.fr`` both give ``a-b-c.fr``), which
is why :func:`candidate_localparts` offers ``-2``, ``-3``... alternatives and
the caller must store the address-to-account binding instead of re-deriving
it.  The caller must also check the full user ID (``@localpart:server``)
against Matrix's 255-byte limit, since only it knows the server name.

Display name: see :func:`display_name_for`.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator

from appliance.addresses.email_address import EmailAddress

# Synapse's mxid_localpart_allowed_characters minus '=', which it escapes so
# that the mapping stays reversible.
_LOCALPART_PASS_THROUGH = frozenset("_-./" + string.ascii_lowercase + string.digits)
DEFAULT_MAX_CANDIDATES = 100
EXTERNAL_MARKER = "(external)"

_NAME_WORD_SEPARATORS = re.compile(r"[._]+")
_NAME_PART_START = re.compile(r"(^|[-'])([a-z])")


def localpart_for(email: EmailAddress) -> str:
    """The preferred Matrix localpart for ``email`` (see the module docstring)."""
    return _escape_localpart(f"{email.local}-{email.domain}")


def _escape_localpart(text: str) -> str:
    escaped = "".join(
        ch
        if ch in _LOCALPART_PASS_THROUGH
        else "".join(f"={byte:02x}" for byte in ch.encode("utf-8"))
        for ch in text.lower()
    )
    if escaped.startswith("_"):
        escaped = "=5f" + escaped[1:]
    return escaped


def candidate_localparts(
    email: EmailAddress, *, max_candidates: int = DEFAULT_MAX_CANDIDATES
) -> Iterator[str]:
    """Yield the localpart, then ``<localpart>-2``, ``-3``... for collisions.

    The caller takes the first one that is free.  The sequence is bounded so
    that a broken availability check cannot loop forever.
    """
    if max_candidates < 1:
        raise ValueError("max_candidates must be at least 1")
    return _numbered(localpart_for(email), max_candidates)


def _numbered(base: str, count: int) -> Iterator[str]:
    yield base
    for number in range(2, count + 1):
        yield f"{base}-{number}"


def display_name_for(email: EmailAddress, *, external: bool = False) -> str:
    """A readable name such as ``Pierre Dupont [ac-paris.fr]``.

    The name comes from the local part: '.' and '_' separate words; each word,
    and each part of it after '-' or an apostrophe, is capitalised
    (``jean-marc.le-goff`` -> ``Jean-Marc Le-Goff``, ``o'brien`` -> ``O'Brien``);
    digits are kept; a ``+tag`` sub-address is left out, as it is not part of
    the person's name; if nothing is left, the local part is shown as is.

    The domain is shown in Unicode (``[école.fr]``).  For a user whose domain
    is not on the allowlist (``external=True``) the format is
    ``Pierre Dupont [gmail.com] (external)``: the marker stays after the
    brackets so that no chosen domain can make it look internal.  Names cannot
    forge brackets, as the local part never contains them.
    """
    name = _name_from_local(email.local) or email.local
    display = f"{name} [{email.unicode_domain}]"
    return f"{display} {EXTERNAL_MARKER}" if external else display


def _name_from_local(local: str) -> str:
    without_tag = local.split("+", 1)[0]
    words = (word for word in _NAME_WORD_SEPARATORS.split(without_tag) if word)
    return " ".join(_capitalise(word) for word in words)


def _capitalise(word: str) -> str:
    return _NAME_PART_START.sub(lambda match: match.group(1) + match.group(2).upper(), word)
