# SPDX-License-Identifier: AGPL-3.0-or-later
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

Display name: see :func:`display_name_for`; what a person may change in it, and what never:
see :func:`display_name_problem`.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Iterator

from appliance.addresses.email_address import EmailAddress

# Synapse's mxid_localpart_allowed_characters minus '=', which it escapes so
# that the mapping stays reversible.
_LOCALPART_PASS_THROUGH = frozenset("_-./" + string.ascii_lowercase + string.digits)
DEFAULT_MAX_CANDIDATES = 100
EXTERNAL_MARKER = "(external)"
# The name a person may choose before the "[domain]" tag: long enough for any real name, short
# enough that the tag and marker always show in a list of members.
NAME_PART_MAX_LENGTH = 64

# Refusals of a chosen display name (the module sends them to the client as they are).
NAME_SUFFIX_REQUIRED = "The display name must end with {suffix}: only the name before it can change"
NAME_ONLY_EXTERNALS_MARKED = "Only externals' display names end with (external)"
NAME_PART_CHARACTERS = (
    "The name may hold only Latin letters, digits, single spaces between words, hyphens, "
    "apostrophes and full stops"
)
NAME_PART_LENGTH = f"The name before the domain must be 1 to {NAME_PART_MAX_LENGTH} characters long"

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


def name_suffix(email: EmailAddress, *, external: bool = False) -> str:
    """What ends the display name of the address's account: ``[ac-paris.fr]``, or
    ``[gmail.com] (external)`` for an external."""
    tag = f"[{email.unicode_domain}]"
    return f"{tag} {EXTERNAL_MARKER}" if external else tag


def display_name_problem(
    display_name: str, addresses: list[EmailAddress], *, external: bool
) -> str | None:
    """Why an account with these addresses may not show ``display_name`` (None: it may).

    The name derived from one of the addresses is always fine.  Otherwise the name is a chosen
    name part, a space and the suffix of one of the addresses (:func:`name_suffix`); an account
    without an address (made by an administrator) has no suffix and chooses the whole name.
    The name part is plain text a reader can trust (:func:`name_part_problem`), so it can neither
    forge a tag or the external marker nor hide the real ones.
    """
    if any(display_name == display_name_for(a, external=external) for a in addresses):
        return None
    if not external and display_name.endswith(EXTERNAL_MARKER):
        return NAME_ONLY_EXTERNALS_MARKED
    if not addresses:
        return name_part_problem(display_name)
    suffixes = list(dict.fromkeys(name_suffix(a, external=external) for a in addresses))
    for suffix in suffixes:
        if display_name.endswith(f" {suffix}"):
            return name_part_problem(display_name[: -len(suffix) - 1])
    return NAME_SUFFIX_REQUIRED.format(suffix=" or ".join(suffixes))


def name_part_problem(name: str) -> str | None:
    """Why ``name`` cannot be the chosen part of a display name (None: it can).

    Allowed: letters of the Latin script (``é``, ``ç``, ``œ``, in composed form), ASCII digits,
    hyphens, apostrophes (``'`` and ``’``), full stops, and single spaces between words.  This
    leaves out, by construction, what makes a name lie: brackets and parentheses (a forged tag
    or marker), invisible and bidirectional controls, every other space, and the look-alike
    letters of other scripts and of fullwidth or mathematical forms.
    """
    if not 1 <= len(name) <= NAME_PART_MAX_LENGTH:
        return NAME_PART_LENGTH
    if unicodedata.normalize("NFC", name) != name or "  " in name or name != name.strip(" "):
        return NAME_PART_CHARACTERS
    if not all(_name_character(ch) for ch in name):
        return NAME_PART_CHARACTERS
    return None


_NAME_PUNCTUATION = frozenset(" -'\u2019.")


def _name_character(ch: str) -> bool:
    if ch in _NAME_PUNCTUATION or "0" <= ch <= "9":
        return True
    # Basic Latin to Latin Extended-B, and Latin Extended Additional (Vietnamese): letters only.
    latin = ord(ch) <= 0x024F or 0x1E00 <= ord(ch) <= 0x1EFF
    return latin and unicodedata.category(ch) in ("Lu", "Ll")
