# SPDX-License-Identifier: AGPL-3.0-or-later
"""Strict parsing and normalisation of professional email addresses.

Registration is gated on the domain of an address, so this parser is a
security boundary: every leniency (stripping spaces, un-quoting, silently
dropping characters) is a way for a string that a human reads as one domain
to be stored as another, or the reverse.  The rules are therefore narrower
than RFC 5322 on purpose, and the parser refuses instead of repairing.

Local part (before '@'): ASCII only, made of letters, digits and ``. _ - + '``
(a subset of the RFC 5322 ``atext`` that covers real professional mailboxes
such as ``jean-marc.le-goff``, ``pierre.dupont+tchap`` or ``o'brien``); no
quoted strings, no comments, no leading, trailing or doubled dot, at most 64
characters.  It is lower-cased: the appliance, like Tchap, treats addresses
case-insensitively.  Brackets, '@', '=' and the like can therefore never
reach a display name or a Matrix ID.

Domain: IDNA 2008 with UTS #46 mapping (non-transitional, STD3 rules), stored
as lower-case A-labels (``école.fr`` -> ``xn--cole-9oa.fr``).  Three policy
decisions sit on top of the standard:

* Invisible characters (zero-width space/joiner, soft hyphen, BOM, bidi
  marks, variation selectors, any other default-ignorable or format
  character) and whitespace are refused anywhere in the address, although
  UTS #46 would silently delete some of them: the user cannot see them, so
  what was typed is not what would be stored.
* Visible compatibility forms that UTS #46 maps onto plain characters
  (fullwidth ``ａｃ-paris.fr``, ideographic full stop ``。``, mathematical
  letters, the Kelvin sign...) ARE accepted and normalise to the same domain:
  by IDNA rules they name that very domain, so mail sent to the normalised
  address reaches the real mailbox and nobody gains anything.
* Homoglyphs: a label whose letters mix scripts (Cyrillic 'а' inside an
  otherwise Latin ``ac-pаris``) is REFUSED, although its punycode would in any
  case be a distinct domain (``xn--ac-pris-5fg.fr``).  Refusing keeps such
  look-alikes out of display names, logs and admin screens.  The usual
  CJK combinations (Han with kana, Hangul or Bopomofo, plus Latin) are
  allowed, as in UTS #39 "highly restrictive".  Single-script look-alikes
  (an all-Cyrillic label) are not detected here: they normalise to their own
  punycode domain, which an allowlist of real domains does not admit.

Punycode input (``xn--...``) is decoded, validated as IDNA 2008 and must be in
canonical form, so it normalises exactly like its Unicode spelling.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import idna

MAX_ADDRESS_LENGTH = 254
MAX_LOCAL_LENGTH = 64
MAX_DOMAIN_LENGTH = 253
MAX_LABEL_LENGTH = 63
LOCAL_PART_PUNCTUATION = "._-+'"

# Bounds the work done on hostile input before any finer check runs; the real
# limits are applied to the normalised form.
_MAX_RAW_LENGTH = 1024

_LOCAL_PART_RE = re.compile(r"[a-z0-9._+'-]+")
_LDH_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_ACE_PREFIX = "xn--"

# Default_Ignorable_Code_Point (Unicode DerivedCoreProperties).  Not all of
# them are format characters (Hangul fillers are letters, variation selectors
# are marks), so the general category alone would miss some.
_DEFAULT_IGNORABLE_RANGES: tuple[tuple[int, int], ...] = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)

# Scripts that may share a label (UTS #39 "highly restrictive" profile).
_ALLOWED_SCRIPT_MIXES: tuple[frozenset[str], ...] = (
    frozenset({"LATIN", "HAN", "KANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)

# The stdlib has no Script property; the first word(s) of a character's name
# give it for every letter IDNA 2008 allows, once these aliases are applied.
_SCRIPT_NAME_PREFIXES: tuple[tuple[str, str], ...] = (
    ("EXTENDED ARABIC-INDIC ", "ARABIC"),
    ("ARABIC-INDIC ", "ARABIC"),
    ("CJK ", "HAN"),
    ("IDEOGRAPHIC ", "HAN"),
    ("KATAKANA-HIRAGANA ", "KANA"),
    ("HIRAGANA ", "KANA"),
    ("KATAKANA ", "KANA"),
)
_TWO_WORD_SCRIPT_NAMES = frozenset({"OLD", "TAI", "NEW", "INSCRIPTIONAL"})


class InvalidEmailAddress(ValueError):
    """The address is refused; ``str(exc)`` says why, for the user."""


class InvalidDomain(ValueError):
    """The domain is refused; ``str(exc)`` says why."""


@dataclass(frozen=True)
class EmailAddress:
    """A normalised address; obtain one from :func:`parse_email`.

    ``domain`` is the ASCII (A-label) form, the only one ever compared.
    """

    local: str
    domain: str

    def __post_init__(self) -> None:
        # A cheap guard so that a hand-built instance cannot smuggle an
        # un-normalised value into code that trusts this type.
        if not _LOCAL_PART_RE.fullmatch(self.local) or not _looks_normalised(self.domain):
            raise ValueError("EmailAddress must be built by parse_email()")

    @property
    def address(self) -> str:
        return f"{self.local}@{self.domain}"

    @property
    def unicode_domain(self) -> str:
        """The domain as people write it (U-labels), for display only."""
        return idna.decode(self.domain)

    def __str__(self) -> str:
        return self.address


def parse_email(raw: str) -> EmailAddress:
    """Parse and normalise ``raw``, or raise :class:`InvalidEmailAddress`."""
    if not isinstance(raw, str):
        raise InvalidEmailAddress("the address must be text")
    if not raw:
        raise InvalidEmailAddress("the address is empty")
    if len(raw) > _MAX_RAW_LENGTH:
        raise InvalidEmailAddress("the address is too long")
    _refuse_invisible(raw, "the address", InvalidEmailAddress)
    local, domain = _split_at(raw)
    normalised_local = _normalise_local(local)
    try:
        normalised_domain = normalise_domain(domain)
    except InvalidDomain as exc:
        raise InvalidEmailAddress(str(exc)) from exc
    email = EmailAddress(normalised_local, normalised_domain)
    if len(email.address) > MAX_ADDRESS_LENGTH:
        raise InvalidEmailAddress(
            f"the address is too long (more than {MAX_ADDRESS_LENGTH} characters)"
        )
    return email


def normalise_domain(raw: str, *, min_labels: int = 2) -> str:
    """Return the lower-case A-label form of ``raw`` or raise :class:`InvalidDomain`.

    ``min_labels`` exists for wildcard allowlist entries, whose suffix is
    validated separately; addresses always need a registrable domain.
    """
    if not isinstance(raw, str):
        raise InvalidDomain("the domain must be text")
    if not raw:
        raise InvalidDomain("the domain is empty")
    if len(raw) > _MAX_RAW_LENGTH:
        raise InvalidDomain("the domain is too long")
    _refuse_invisible(raw, "the domain", InvalidDomain)
    _refuse_non_hostname_syntax(raw)
    labels = _split_labels(_uts46_map(raw), min_labels)
    domain = ".".join(_to_a_label(label) for label in labels)
    # Tested on the A-label so that Unicode and punycode spellings agree.
    if domain.rpartition(".")[2].isdigit():
        raise InvalidDomain(
            "the last label of the domain is a number: IP addresses are not accepted"
        )
    if len(domain) > MAX_DOMAIN_LENGTH:
        raise InvalidDomain(f"the domain is longer than {MAX_DOMAIN_LENGTH} characters")
    return domain


# --- address structure -------------------------------------------------------


def _split_at(raw: str) -> tuple[str, str]:
    count = raw.count("@")
    if count == 0:
        raise InvalidEmailAddress("the address has no '@'")
    if count > 1:
        raise InvalidEmailAddress("the address has several '@'")
    local, domain = raw.split("@")
    return local, domain


def _normalise_local(local: str) -> str:
    if not local:
        raise InvalidEmailAddress("the part before '@' is empty")
    if '"' in local:
        raise InvalidEmailAddress("quoted names (\"...\") are not accepted before '@'")
    if "(" in local or ")" in local:
        raise InvalidEmailAddress("comments in parentheses are not accepted")
    # ASCII is checked before lower-casing because str.lower() maps some
    # non-ASCII letters onto ASCII ones (KELVIN SIGN -> 'k').
    bad = next((ch for ch in local if not _is_local_part_char(ch)), None)
    if bad is not None:
        raise InvalidEmailAddress(
            f"the part before '@' contains {_describe(bad)}; only letters a-z, digits "
            f"and {' '.join(LOCAL_PART_PUNCTUATION)} are accepted"
        )
    if local.startswith(".") or local.endswith("."):
        raise InvalidEmailAddress("the part before '@' must not start or end with a dot")
    if ".." in local:
        raise InvalidEmailAddress("the part before '@' has two dots in a row")
    if len(local) > MAX_LOCAL_LENGTH:
        raise InvalidEmailAddress(
            f"the part before '@' is longer than {MAX_LOCAL_LENGTH} characters"
        )
    return local.lower()


def _is_local_part_char(ch: str) -> bool:
    return ch.isascii() and (ch.isalnum() or ch in LOCAL_PART_PUNCTUATION)


# --- characters ----------------------------------------------------------------


def _refuse_invisible(text: str, what: str, error: type[ValueError]) -> None:
    """Refuse whitespace, control, format and default-ignorable characters."""
    for position, ch in enumerate(text, start=1):
        category = unicodedata.category(ch)
        if ch.isspace() or category.startswith("Z"):
            raise error(f"{what} contains whitespace ({_describe(ch)}) at position {position}")
        if category == "Cc":
            raise error(
                f"{what} contains a control character ({_describe(ch)}) at position {position}"
            )
        if category in ("Cf", "Cs", "Co", "Cn") or _is_default_ignorable(ch):
            raise error(
                f"{what} contains an invisible or non-printable character "
                f"({_describe(ch)}) at position {position}"
            )


def _is_default_ignorable(ch: str) -> bool:
    code = ord(ch)
    return any(low <= code <= high for low, high in _DEFAULT_IGNORABLE_RANGES)


def _describe(ch: str) -> str:
    name = unicodedata.name(ch, "")
    shown = f"'{ch}' " if ch.isprintable() and not ch.isspace() else ""
    return f"{shown}U+{ord(ch):04X} {name}".rstrip()


# --- domain --------------------------------------------------------------------


def _refuse_non_hostname_syntax(raw: str) -> None:
    """Give precise messages for syntaxes that mail allows but we do not."""
    if "[" in raw or "]" in raw:
        raise InvalidDomain("IP-address literals ([...]) are not accepted; use a domain name")
    if "%" in raw:
        raise InvalidDomain("the domain contains '%': percent-encoding is not accepted")
    if "(" in raw or ")" in raw:
        raise InvalidDomain("comments in parentheses are not accepted")


def _uts46_map(raw: str) -> str:
    try:
        return idna.uts46_remap(raw, std3_rules=True, transitional=False)
    except idna.IDNAError as exc:
        raise InvalidDomain(
            f"the domain contains a character not allowed in domain names ({exc})"
        ) from exc


def _split_labels(mapped: str, min_labels: int) -> list[str]:
    # Checked after mapping: '。' and '．' become dots only there.
    if mapped.endswith("."):
        raise InvalidDomain("the domain must not end with a dot")
    labels = mapped.split(".")
    if "" in labels:
        raise InvalidDomain("the domain has an empty label (leading dot or two dots in a row)")
    if len(labels) < min_labels:
        raise InvalidDomain("the domain must have at least two labels, like 'example.fr'")
    return labels


def _to_a_label(label: str) -> str:
    """Validate one mapped label and return its lower-case A-label."""
    if not label.isascii():
        return _encode_u_label(label)
    if label.startswith(_ACE_PREFIX):
        return _check_a_label(label)
    _check_ldh(label)
    return label


def _encode_u_label(label: str) -> str:
    try:
        a_label = idna.alabel(label).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise InvalidDomain(
            f"the domain label '{label}' is not a valid internationalised label ({exc})"
        ) from exc
    _refuse_mixed_scripts(label)
    _check_ldh(a_label)
    return a_label


def _check_a_label(label: str) -> str:
    """Decode punycode so that it is held to the same rules as Unicode input."""
    try:
        u_label = idna.ulabel(label)
        canonical = idna.alabel(u_label).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise InvalidDomain(f"the domain label '{label}' is not valid punycode ({exc})") from exc
    if canonical != label:
        raise InvalidDomain(f"the domain label '{label}' is not in canonical punycode form")
    _refuse_invisible(u_label, f"the domain label '{label}'", InvalidDomain)
    _refuse_mixed_scripts(u_label)
    _check_ldh(label)
    return label


def _check_ldh(label: str) -> None:
    if len(label) > MAX_LABEL_LENGTH:
        raise InvalidDomain(
            f"the domain label '{label}' is longer than {MAX_LABEL_LENGTH} characters"
        )
    if label.startswith("-") or label.endswith("-"):
        raise InvalidDomain(f"the domain label '{label}' must not start or end with a hyphen")
    if label[2:4] == "--" and not label.startswith(_ACE_PREFIX):
        raise InvalidDomain(
            f"the domain label '{label}' has '--' in 3rd and 4th position, which is reserved"
        )
    if not _LDH_LABEL_RE.fullmatch(label):
        raise InvalidDomain(f"the domain label '{label}' may only hold letters, digits and hyphens")


def _looks_normalised(domain: str) -> bool:
    labels = domain.split(".")
    return (
        len(labels) >= 2
        and len(domain) <= MAX_DOMAIN_LENGTH
        and all(_LDH_LABEL_RE.fullmatch(label) for label in labels)
    )


# --- scripts -------------------------------------------------------------------


def _refuse_mixed_scripts(u_label: str) -> None:
    scripts = {script for script in map(_script_of, u_label) if script is not None}
    if len(scripts) <= 1 or any(scripts <= allowed for allowed in _ALLOWED_SCRIPT_MIXES):
        return
    raise InvalidDomain(
        f"the domain label '{u_label}' mixes writing systems ({', '.join(sorted(scripts))}), "
        "as look-alike domains do"
    )


def _script_of(ch: str) -> str | None:
    """Script of ``ch``, or None for characters shared by all scripts."""
    if ch.isascii():
        return "LATIN" if ch.isalpha() else None
    if unicodedata.category(ch) in ("Mn", "Mc", "Me"):
        return None  # combining marks take the script of their base
    name = unicodedata.name(ch, "")
    if name == "MIDDLE DOT":
        return None  # IDNA only allows it in Catalan 'l·l'
    for prefix, script in _SCRIPT_NAME_PREFIXES:
        if name.startswith(prefix):
            return script
    words = name.split(" ")
    if words[0] in _TWO_WORD_SCRIPT_NAMES and len(words) > 1:
        return " ".join(words[:2])
    # Characters without a script prefix (MODIFIER LETTER APOSTROPHE...) get a
    # script of their own, so they cannot sit unnoticed inside a Latin label.
    return words[0] or f"U+{ord(ch):04X}"
