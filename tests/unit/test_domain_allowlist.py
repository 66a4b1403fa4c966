# SPDX-License-Identifier: AGPL-3.0-or-later
"""Tests for appliance.addresses.domain_allowlist, including end-to-end admission attacks."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.addresses.domain_allowlist import (
    DomainAllowlist,
    InvalidDomainEntry,
    normalise_domain_entry,
)
from appliance.addresses.email_address import InvalidEmailAddress, parse_email

LISTED = "ac-paris.fr"
ALLOWLIST = DomainAllowlist([LISTED, "*.gouv.fr"])


def admitted(raw: str, allowlist: DomainAllowlist = ALLOWLIST) -> bool:
    """What registration decides for a raw address typed by a user."""
    try:
        email = parse_email(raw)
    except InvalidEmailAddress:
        return False
    return allowlist.allows(email.domain)


# --- entries -------------------------------------------------------------------

VALID_ENTRIES = [
    ("exact", "ac-paris.fr", "ac-paris.fr"),
    ("exact-upper", "AC-PARIS.FR", "ac-paris.fr"),
    ("exact-idn", "ÉCOLE.fr", "xn--cole-9oa.fr"),
    ("exact-punycode", "xn--cole-9oa.fr", "xn--cole-9oa.fr"),
    ("wildcard", "*.gouv.fr", "*.gouv.fr"),
    ("wildcard-upper", "*.GOUV.FR", "*.gouv.fr"),
    ("wildcard-idn", "*.école.fr", "*.xn--cole-9oa.fr"),
    ("wildcard-deep", "*.interieur.gouv.fr", "*.interieur.gouv.fr"),
]


@pytest.mark.parametrize(
    ("raw", "expected"), [c[1:] for c in VALID_ENTRIES], ids=[c[0] for c in VALID_ENTRIES]
)
def test_entries_normalise(raw: str, expected: str) -> None:
    assert normalise_domain_entry(raw) == expected
    assert normalise_domain_entry(expected) == expected


INVALID_ENTRIES = [
    ("wildcard-without-dot", "*gouv.fr", "followed by a dot"),
    ("two-wildcards", "*.*.fr", "only one wildcard"),
    ("wildcard-last", "gouv.*", "whole first label"),
    ("wildcard-middle", "a.*.fr", "whole first label"),
    ("wildcard-inside-label", "a*.gouv.fr", "whole first label"),
    ("wildcard-on-tld", "*.fr", "top-level domain 'fr'"),
    ("wildcard-on-idn-tld", "*.рф", "top-level domain 'xn--p1ai'"),
    ("bare-star", "*", "followed by a dot"),
    ("star-dot", "*.", "empty"),
    ("single-label", "fr", "two labels"),
    ("trailing-dot", "gouv.fr.", "end with a dot"),
    ("leading-space", " ac-paris.fr", "whitespace"),
    ("trailing-space", "ac-paris.fr ", "whitespace"),
    ("at-sign", "user@ac-paris.fr", "not allowed in domain names"),
    ("homoglyph", "ac-p\u0430ris.fr", "mixes writing systems"),
    ("invisible", "ac-paris\u200b.fr", "invisible"),
    ("percent", "ac%2Dparis.fr", "percent"),
    ("ip-literal", "[127.0.0.1]", "IP-address literals"),
    ("bare-ip", "10.0.0.1", "IP addresses"),
    ("bogus-punycode", "xn--ac-paris-invalid.fr", "punycode"),
    ("empty", "", "empty"),
]


@pytest.mark.parametrize(
    ("raw", "fragment"), [c[1:] for c in INVALID_ENTRIES], ids=[c[0] for c in INVALID_ENTRIES]
)
def test_invalid_entries_name_the_entry_and_the_reason(raw: str, fragment: str) -> None:
    with pytest.raises(InvalidDomainEntry) as info:
        normalise_domain_entry(raw)
    assert fragment in str(info.value)
    assert repr(raw) in str(info.value)


def test_constructor_refuses_invalid_entries_and_a_bare_string() -> None:
    with pytest.raises(InvalidDomainEntry):
        DomainAllowlist(["ac-paris.fr", "*.fr"])
    with pytest.raises(TypeError):
        DomainAllowlist("ac-paris.fr")


def test_constructor_normalises_and_exposes_entries() -> None:
    allowlist = DomainAllowlist(["AC-PARIS.FR", "ac-paris.fr", "*.Gouv.fr", "école.fr"])
    assert allowlist.entries == ("*.gouv.fr", "ac-paris.fr", "xn--cole-9oa.fr")
    assert len(allowlist) == 3
    assert not DomainAllowlist([]).allows("ac-paris.fr")


# --- decisions -----------------------------------------------------------------

DECISIONS = [
    ("exact", "ac-paris.fr", "ac-paris.fr"),
    ("subdomain-of-exact-is-not-admitted", "x.ac-paris.fr", None),
    ("wildcard-one-level", "x.gouv.fr", "*.gouv.fr"),
    ("wildcard-two-levels", "a.b.gouv.fr", "*.gouv.fr"),
    ("wildcard-excludes-its-own-domain", "gouv.fr", None),
    ("wildcard-is-label-aligned", "evilgouv.fr", None),
    ("wildcard-is-label-aligned-deeper", "x.evilgouv.fr", None),
    ("listed-domain-as-prefix", "ac-paris.fr.evil.com", None),
    ("listed-domain-as-suffix", "evil-ac-paris.fr", None),
    ("other-tld", "ac-paris.com", None),
]


@pytest.mark.parametrize(
    ("domain", "entry"), [c[1:] for c in DECISIONS], ids=[c[0] for c in DECISIONS]
)
def test_decisions(domain: str, entry: str | None) -> None:
    assert ALLOWLIST.matching_entry(domain) == entry
    assert ALLOWLIST.allows(domain) is (entry is not None)


def test_most_specific_entry_is_reported() -> None:
    allowlist = DomainAllowlist(
        ["*.gouv.fr", "*.interieur.gouv.fr", "prefecture.interieur.gouv.fr"]
    )
    assert (
        allowlist.matching_entry("prefecture.interieur.gouv.fr") == "prefecture.interieur.gouv.fr"
    )
    assert allowlist.matching_entry("x.prefecture.interieur.gouv.fr") == "*.interieur.gouv.fr"
    assert allowlist.matching_entry("x.justice.gouv.fr") == "*.gouv.fr"


@pytest.mark.parametrize(
    "domain", ["AC-PARIS.FR", "ac-paris.fr.", " ac-paris.fr", "école.fr", "xn--bogus-.gouv.fr"]
)
def test_unnormalised_domains_are_a_programming_error(domain: str) -> None:
    with pytest.raises(ValueError):
        ALLOWLIST.allows(domain)


# --- end to end: what a user can type --------------------------------------------

# (id, raw, whether parse_email itself refuses it)
ATTACKS = [
    ("trailing-dot", "user@ac-paris.fr.", True),
    ("trailing-space", "user@ac-paris.fr ", True),
    ("leading-space", " user@ac-paris.fr", True),
    ("trailing-newline", "user@ac-paris.fr\n", True),
    ("listed-domain-as-prefix", "user@ac-paris.fr.evil.com", False),
    ("listed-domain-as-suffix", "user@evil-ac-paris.fr", False),
    ("several-at", "a@b@ac-paris.fr", True),
    ("at-hidden-in-local", "user@ac-paris.fr@evil.com", True),
    ("quoted-local", '"a b"@ac-paris.fr', True),
    ("quoted-at", '"user@ac-paris.fr"@evil.com', True),
    ("comment-local", "user(comment)@ac-paris.fr", True),
    ("comment-hiding-domain", "user@evil.com(@ac-paris.fr)", True),
    ("cyrillic-a", "user@ac-p\u0430ris.fr", True),
    ("zero-width-space-domain", "user@ac-paris\u200b.fr", True),
    ("zero-width-space-local", "user\u200b@ac-paris.fr", True),
    ("soft-hyphen", "user@ac-paris\u00ad.fr", True),
    ("percent-encoded", "user@ac%2Dparis.fr", True),
    ("bogus-punycode", "user@xn--ac-paris-invalid.fr", True),
    ("bogus-punycode-under-wildcard", "user@xn--ac-paris-invalid.gouv.fr", True),
    ("ip-literal", "user@[127.0.0.1]", True),
    ("wildcard-parent", "user@gouv.fr", False),
    ("wildcard-lookalike", "user@evilgouv.fr", False),
]


@pytest.mark.parametrize(
    ("raw", "unparseable"), [c[1:] for c in ATTACKS], ids=[c[0] for c in ATTACKS]
)
def test_attacks_are_not_admitted(raw: str, unparseable: bool) -> None:
    assert not admitted(raw)
    if unparseable:
        with pytest.raises(InvalidEmailAddress):
            parse_email(raw)
    else:
        assert not ALLOWLIST.allows(parse_email(raw).domain)


@pytest.mark.parametrize(
    "raw",
    [
        "user@ac-paris.fr",
        "USER@AC-PARIS.FR",
        "User@Ac-Paris.Fr",
        "user@ａｃ-paris.fr",
        "x@A.B.GOUV.FR",
    ],
    ids=[
        "plain",
        "upper-case",
        "mixed-case",
        "fullwidth-same-domain-by-idna",
        "upper-case-under-wildcard",
    ],
)
def test_case_and_width_variants_are_admitted(raw: str) -> None:
    assert admitted(raw)


def test_upper_case_is_admitted_and_normalised() -> None:
    email = parse_email("USER@AC-PARIS.FR")
    assert email.address == "user@ac-paris.fr"
    assert ALLOWLIST.matching_entry(email.domain) == "ac-paris.fr"


# --- properties ------------------------------------------------------------------

_HOMOGLYPHS = {
    "a": ["\u0430", "\u03b1", "\u0251"],  # Cyrillic а, Greek α, Latin ɑ
    "c": ["\u0441", "\u03f2"],
    "p": ["\u0440", "\u03c1"],
    "r": ["\u0433"],
    "i": ["\u0456", "\u0131", "\u03b9"],  # Cyrillic і, dotless ı, Greek ι
    "s": ["\u0455"],
    "f": ["\u0192"],
    "-": ["\u2010", "\u2011", "\u2212", "\u00ad"],
    ".": ["\u3002", "\uff0e", "\u2024"],
}
_INVISIBLES = [
    "\u200b",
    "\u200c",
    "\u200d",
    "\u00ad",
    "\ufeff",
    "\u200e",
    "\u202e",
    "\u2060",
    "\ufe0f",
    "\u034f",
]
_TARGET = f"user@{LISTED}"


def _fullwidth(ch: str) -> str:
    return chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch


@st.composite
def mutated_addresses(draw: st.DrawFn) -> str:
    """The listed address with a few edits of the kinds attackers use."""
    text = _TARGET
    for _ in range(draw(st.integers(1, 3))):
        position = draw(st.integers(0, len(text)))
        domain_position = (
            draw(st.integers(text.find("@") + 1, len(text) - 1)) if "@" in text else position
        )
        kind = draw(
            st.sampled_from(
                [
                    "upper",
                    "fullwidth",
                    "homoglyph",
                    "invisible",
                    "prefix",
                    "suffix",
                    "trailing",
                    "percent",
                    "at",
                    "quote",
                    "comment",
                ]
            )
        )
        if kind == "upper":
            text = text[:position] + text[position:].upper()
        elif kind == "fullwidth":
            text = (
                text[:domain_position]
                + _fullwidth(text[domain_position])
                + text[domain_position + 1 :]
            )
        elif kind == "homoglyph":
            ch = text[domain_position]
            if ch in _HOMOGLYPHS:
                text = (
                    text[:domain_position]
                    + draw(st.sampled_from(_HOMOGLYPHS[ch]))
                    + text[domain_position + 1 :]
                )
        elif kind == "invisible":
            text = text[:position] + draw(st.sampled_from(_INVISIBLES)) + text[position:]
        elif kind == "prefix":
            text = text.replace("@", "@" + draw(st.sampled_from(["evil-", "x", "evil.", "-"])), 1)
        elif kind == "suffix":
            text = text + draw(st.sampled_from([".evil.com", "x", "-evil.fr", ".fr"]))
        elif kind == "trailing":
            text = text + draw(st.sampled_from([".", " ", "\n", "\t", "\u00a0", "\u3002"]))
        elif kind == "percent":
            ch = text[domain_position]
            text = text[:domain_position] + f"%{ord(ch):02X}" + text[domain_position + 1 :]
        elif kind == "at":
            text = draw(st.sampled_from(["a@", "@"])) + text
        elif kind == "quote":
            text = '"' + text.replace("@", '"@', 1)
        else:
            text = text.replace("@", "(" + draw(st.sampled_from(["", "x", "@evil.com"])) + ")@", 1)
    return text


_IDNA_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})


def _same_address_by_idna_rules(raw: str) -> bool:
    """Independent oracle: ASCII local part equal up to case, and a domain
    equal up to the UTS #46 dot separators, NFKC and case folding.  NFKC does
    not remove invisible characters, so those count as different."""
    if raw.count("@") != 1:
        return False
    local, domain = raw.split("@")
    folded = unicodedata.normalize("NFKC", domain.translate(_IDNA_DOTS)).casefold()
    return local.isascii() and local.lower() == "user" and folded == LISTED


@given(mutated_addresses())
def test_a_mutation_is_admitted_only_if_it_is_the_listed_address(raw: str) -> None:
    if admitted(raw, DomainAllowlist([LISTED])):
        assert _same_address_by_idna_rules(raw)
        assert parse_email(raw).address == _TARGET


@st.composite
def case_and_width_variants(draw: st.DrawFn) -> str:
    local, domain = _TARGET.split("@")
    local = "".join(ch.upper() if draw(st.booleans()) else ch for ch in local)
    styled = []
    for ch in domain:
        if draw(st.booleans()):
            ch = ch.upper()
        if draw(st.booleans()):
            ch = _fullwidth(ch)
        styled.append(ch)
    return f"{local}@{''.join(styled)}"


@given(case_and_width_variants())
def test_every_case_and_width_variant_is_admitted(variant: str) -> None:
    assert admitted(variant, DomainAllowlist([LISTED]))
    assert parse_email(variant).address == _TARGET


ldh_labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True).filter(
    lambda s: s[2:4] != "--"
)


@given(st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=10), ldh_labels)
def test_wildcard_never_admits_its_parent_or_lookalikes(glued: str, label: str) -> None:
    allowlist = DomainAllowlist(["*.gouv.fr"])
    assert not allowlist.allows("gouv.fr")
    assert not admitted(f"u@{glued}gouv.fr", allowlist)
    assert allowlist.allows(f"{label}.gouv.fr")


_SMALL_LABELS = ["a", "b", "gouv", "fr", "xn--cole-9oa", "x-y"]
small_domains = st.lists(st.sampled_from(_SMALL_LABELS), min_size=2, max_size=5).map(".".join)
small_entries = st.one_of(small_domains, small_domains.map(lambda d: "*." + d))


def _reference_decision(domain: str, entries: list[str]) -> bool:
    """Brute force over every entry, written independently of the implementation."""
    for entry in entries:
        if entry.startswith("*."):
            if domain.endswith("." + entry[2:]):
                return True
        elif domain == entry:
            return True
    return False


@given(st.lists(small_entries, max_size=8), small_domains)
def test_decision_equals_brute_force_reference(entries: list[str], domain: str) -> None:
    allowlist = DomainAllowlist(entries)
    assert allowlist.allows(domain) == _reference_decision(domain, entries)
    entry = allowlist.matching_entry(domain)
    if entry is not None:
        assert _reference_decision(domain, [entry])


def test_from_normalised_decides_like_the_checking_constructor() -> None:
    entries = ["ac-paris.fr", "*.gouv.fr", "xn--cole-9oa.fr", "*.region.example.org"]
    checked, trusted = DomainAllowlist(entries), DomainAllowlist.from_normalised(entries)
    assert trusted.entries == checked.entries
    for domain in ("ac-paris.fr", "x.gouv.fr", "gouv.fr", "a.region.example.org", "evil.fr"):
        assert trusted.matching_entry(domain) == checked.matching_entry(domain)


def test_from_normalised_never_widens_on_a_non_canonical_entry() -> None:
    # A hand-edited row in upper case is not canonical: it matches nothing rather than more.
    assert not DomainAllowlist.from_normalised(["AC-PARIS.FR"]).allows("ac-paris.fr")
