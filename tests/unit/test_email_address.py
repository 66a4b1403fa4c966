# SPDX-License-Identifier: AGPL-3.0-or-later
"""Tests for appliance.addresses.email_address: strict parsing and normalisation."""

from __future__ import annotations

import idna
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from appliance.addresses.email_address import (
    EmailAddress,
    InvalidDomain,
    InvalidEmailAddress,
    normalise_domain,
    parse_email,
)

# (id, raw, normalised address)
ACCEPTED = [
    ("plain", "pierre.dupont@ac-paris.fr", "pierre.dupont@ac-paris.fr"),
    ("upper-case-everywhere", "USER@AC-PARIS.FR", "user@ac-paris.fr"),
    ("mixed-case", "Pierre.Dupont@Ac-Paris.Fr", "pierre.dupont@ac-paris.fr"),
    ("hyphens-and-underscore", "jean-marc.le_goff@x.fr", "jean-marc.le_goff@x.fr"),
    ("plus-tag", "pierre+tchap@ac-paris.fr", "pierre+tchap@ac-paris.fr"),
    ("apostrophe", "o'brien@x.fr", "o'brien@x.fr"),
    ("digits", "agent007@interieur.gouv.fr", "agent007@interieur.gouv.fr"),
    ("idn-lower", "a@école.fr", "a@xn--cole-9oa.fr"),
    ("idn-upper", "a@ÉCOLE.fr", "a@xn--cole-9oa.fr"),
    ("idn-decomposed-accent", "a@e\u0301cole.fr", "a@xn--cole-9oa.fr"),
    ("punycode", "a@xn--cole-9oa.fr", "a@xn--cole-9oa.fr"),
    ("punycode-upper", "a@XN--COLE-9OA.FR", "a@xn--cole-9oa.fr"),
    ("sharp-s-kept-idna2008", "a@straße.de", "a@xn--strae-oqa.de"),
    ("japanese-han-kana", "a@東京カタログ.jp", "a@xn--lckk8b8k332l9b5a.jp"),
    ("all-cyrillic", "a@москва.рф", "a@xn--80adxhks.xn--p1ai"),
    ("catalan-middle-dot", "a@l·l.cat", "a@xn--ll-0ea.cat"),
    ("numeric-non-final-label", "a@123.example.fr", "a@123.example.fr"),
]


@pytest.mark.parametrize(
    ("raw", "expected"), [c[1:] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED]
)
def test_accepted_addresses_normalise(raw: str, expected: str) -> None:
    assert parse_email(raw).address == expected


def test_fullwidth_domain_maps_to_the_same_domain_by_idna_rules() -> None:
    """Decision: UTS #46 maps fullwidth letters to ASCII, so 'ａｃ-paris.fr' IS
    'ac-paris.fr' for every IDNA-aware resolver and mailer.  Mail sent to the
    normalised address reaches the real domain, so accepting it grants nothing.
    The same holds for the ideographic full stop used as a dot."""
    assert parse_email("user@ａｃ-paris.fr").domain == "ac-paris.fr"
    assert parse_email("user@ac-paris。fr").domain == "ac-paris.fr"
    assert parse_email("user@ａｃ－ｐａｒｉｓ．ｆｒ").domain == "ac-paris.fr"


def test_fullwidth_is_refused_in_the_local_part() -> None:
    with pytest.raises(InvalidEmailAddress, match="before '@'"):
        parse_email("ｕｓｅｒ@ac-paris.fr")


def test_unicode_and_punycode_spellings_are_the_same_address() -> None:
    assert parse_email("a@école.fr") == parse_email("a@xn--cole-9oa.fr")
    assert parse_email("a@ÉCOLE.FR") == parse_email("A@XN--COLE-9OA.FR")


def test_brief_example_punycode_is_another_domain() -> None:
    # 'xn--cole-9na' decodes to 'âcole', not 'école': a distinct domain.
    assert idna.decode("xn--cole-9na") == "âcole"
    assert parse_email("a@xn--cole-9na.fr") != parse_email("a@école.fr")


# (id, raw, fragment of the message)
REFUSED = [
    ("trailing-dot", "user@ac-paris.fr.", "end with a dot"),
    ("trailing-ideographic-dot", "user@ac-paris.fr。", "end with a dot"),
    ("trailing-space", "user@ac-paris.fr ", "whitespace"),
    ("leading-space", " user@ac-paris.fr", "whitespace"),
    ("trailing-newline", "user@ac-paris.fr\n", "whitespace"),
    ("tab-inside", "user\t@ac-paris.fr", "whitespace"),
    ("nbsp", "user@ac-paris.fr\u00a0", "whitespace"),
    ("no-at", "user.ac-paris.fr", "no '@'"),
    ("fullwidth-at", "user＠ac-paris.fr", "no '@'"),
    ("several-at", "a@b@ac-paris.fr", "several '@'"),
    ("quoted-local-with-space", '"a b"@ac-paris.fr', "whitespace"),
    ("quoted-local", '"user"@ac-paris.fr', "quoted"),
    ("comment-in-local", "user(comment)@ac-paris.fr", "comments"),
    ("comment-in-domain", "user@(comment)ac-paris.fr", "comments"),
    ("cyrillic-a-homoglyph", "user@ac-p\u0430ris.fr", "mixes writing systems"),
    ("greek-alpha-homoglyph", "user@ac-p\u03b1ris.fr", "mixes writing systems"),
    ("cyrillic-in-punycode", "user@xn--ac-pris-5fg.fr", "mixes writing systems"),
    ("modifier-apostrophe", "user@ac\u02bcparis.fr", "mixes writing systems"),
    ("zero-width-space-domain", "user@ac-paris\u200b.fr", "invisible"),
    ("zero-width-space-local", "user\u200b@ac-paris.fr", "invisible"),
    ("zero-width-joiner", "user@ac-pa\u200dris.fr", "invisible"),
    ("zero-width-non-joiner", "user@ac-pa\u200cris.fr", "invisible"),
    ("soft-hyphen", "user@ac-paris\u00ad.fr", "invisible"),
    ("byte-order-mark", "\ufeffuser@ac-paris.fr", "invisible"),
    ("right-to-left-override", "user@\u202eac-paris.fr", "invisible"),
    ("left-to-right-mark", "user@ac-paris.fr\u200e", "invisible"),
    ("word-joiner", "user@ac\u2060-paris.fr", "invisible"),
    ("variation-selector", "user@ac-paris\ufe0f.fr", "invisible"),
    ("combining-grapheme-joiner", "user@ac-paris\u034f.fr", "invisible"),
    ("hangul-filler", "user@ac-paris\u3164.fr", "invisible"),
    ("nul", "user\x00@ac-paris.fr", "control"),
    ("percent-encoded-hyphen", "user@ac%2Dparis.fr", "percent"),
    ("percent-encoded-local", "us%65r@ac-paris.fr", "before '@'"),
    ("bogus-punycode", "user@xn--ac-paris-invalid.fr", "punycode"),
    ("punycode-of-plain-ascii", "user@xn--ac-paris-.fr", "punycode"),
    ("truncated-punycode", "user@xn--zz.fr", "punycode"),
    ("empty-punycode", "user@xn--.fr", "punycode"),
    ("ip-literal", "user@[127.0.0.1]", "IP-address literals"),
    ("ipv6-literal", "user@[IPv6:::1]", "IP-address literals"),
    ("bare-ip", "user@127.0.0.1", "IP addresses"),
    ("numeric-tld", "user@ac-paris.123", "IP addresses"),
    ("single-label", "user@localhost", "two labels"),
    ("empty-label", "user@ac-paris..fr", "empty label"),
    ("leading-dot-domain", "user@.ac-paris.fr", "empty label"),
    ("empty-domain", "user@", "empty"),
    ("empty-local", "@ac-paris.fr", "empty"),
    ("leading-dot-local", ".user@ac-paris.fr", "start or end with a dot"),
    ("trailing-dot-local", "user.@ac-paris.fr", "start or end with a dot"),
    ("double-dot-local", "us..er@ac-paris.fr", "two dots"),
    ("non-ascii-local", "pierré@ac-paris.fr", "before '@'"),
    ("kelvin-sign-local", "\u212aelvin@ac-paris.fr", "before '@'"),
    ("special-in-local", "user!@ac-paris.fr", "before '@'"),
    ("angle-brackets", "<user@ac-paris.fr>", "before '@'"),
    ("underscore-in-domain", "user@ac_paris.fr", "not allowed in domain names"),
    ("slash-in-domain", "user@ac-paris.fr/x", "not allowed in domain names"),
    ("emoji-domain", "user@\U0001f4a9.fr", "not a valid internationalised label"),
    ("leading-hyphen-label", "user@-ac-paris.fr", "hyphen"),
    ("trailing-hyphen-label", "user@ac-paris-.fr", "hyphen"),
    ("reserved-double-hyphen", "user@ac--paris.fr", "reserved"),
    ("label-too-long", "user@" + "a" * 64 + ".fr", "longer than 63"),
    ("empty", "", "empty"),
]


@pytest.mark.parametrize(("raw", "fragment"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_refused_addresses_say_why(raw: str, fragment: str) -> None:
    with pytest.raises(InvalidEmailAddress) as info:
        parse_email(raw)
    assert fragment in str(info.value)


def test_several_at_message() -> None:
    with pytest.raises(InvalidEmailAddress, match="^the address has several '@'$"):
        parse_email("a@b@c.fr")


def test_non_text_is_refused() -> None:
    with pytest.raises(InvalidEmailAddress):
        parse_email(b"user@ac-paris.fr")  # type: ignore[arg-type]


def test_length_limits() -> None:
    assert parse_email("a" * 64 + "@x.fr")
    with pytest.raises(InvalidEmailAddress, match="longer than 64"):
        parse_email("a" * 65 + "@x.fr")
    domain_253 = ".".join(["a" * 63] * 3 + ["b" * 61])
    assert len(domain_253) == 253
    assert normalise_domain(domain_253) == domain_253
    with pytest.raises(InvalidDomain, match="longer than 253"):
        normalise_domain(domain_253 + "b")
    # 64 + 1 + 189 = 254 is the maximum for a whole address.
    domain_189 = ".".join(["a" * 63, "b" * 63, "c" * 61])
    assert len(parse_email("l" * 64 + "@" + domain_189).address) == 254
    with pytest.raises(InvalidEmailAddress, match="longer than 254|too long"):
        parse_email("l" * 64 + "@" + domain_189 + "c")
    with pytest.raises(InvalidEmailAddress, match="too long"):
        parse_email("a@" + "b" * 5000 + ".fr")


def test_email_address_cannot_be_built_unnormalised() -> None:
    with pytest.raises(ValueError):
        EmailAddress("User", "ac-paris.fr")
    with pytest.raises(ValueError):
        EmailAddress("user", "AC-PARIS.FR")
    with pytest.raises(ValueError):
        EmailAddress("user", "ac-paris.fr.")


def test_unicode_domain_is_for_display() -> None:
    email = parse_email("a@ÉCOLE.fr")
    assert email.unicode_domain == "école.fr"
    assert str(email) == "a@xn--cole-9oa.fr"


# --- properties ------------------------------------------------------------------

_LOCAL_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-+'"
_LABEL_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFXYZ0123456789-éèàçôÉÈÀÇÔßüÜ"

labels = st.text(_LABEL_ALPHABET, min_size=1, max_size=12)
plausible_addresses = st.builds(
    lambda local, domain_labels: f"{local}@{'.'.join(domain_labels)}",
    st.text(_LOCAL_ALPHABET, min_size=1, max_size=20),
    st.lists(labels, min_size=1, max_size=4),
)
# Hostile mixtures: the characters attacks are made of.
hostile_text = st.text(
    'aAx-n.@ é\u0430\u03b1\u200b\u200d\u00ad\ufeff%"()[]ａ。．\n\u212a1',
    max_size=24,
)


def _parse_or_none(raw: str) -> EmailAddress | None:
    try:
        return parse_email(raw)
    except InvalidEmailAddress:
        return None


@given(st.one_of(plausible_addresses, hostile_text, st.text(max_size=40)))
@example("a@ÉCOLE.fr")
@example("a@ａｃ-paris.fr")
def test_only_invalid_email_address_is_ever_raised_and_results_reparse_to_themselves(
    raw: str,
) -> None:
    email = _parse_or_none(raw)
    if email is None:
        return
    assert parse_email(email.address) == email  # idempotent
    assert parse_email(f"{email.local}@{email.unicode_domain}") == email  # Unicode form agrees
    assert email.address == email.address.lower()
    assert email.address.isascii()
    assert len(email.address) <= 254


@given(plausible_addresses)
def test_upper_case_variants_normalise_identically(raw: str) -> None:
    email = _parse_or_none(raw)
    if email is None:
        return
    # 'ß'.upper() is 'SS': a different domain, so only swap case of characters
    # whose case mapping is one-to-one.
    swapped = "".join(ch.swapcase() if len(ch.swapcase()) == 1 else ch for ch in raw)
    assert parse_email(swapped) == email
    assert parse_email(raw.upper() if "ß" not in raw else raw) == email


@given(st.lists(labels, min_size=2, max_size=4))
def test_domain_normalisation_is_idempotent(domain_labels: list[str]) -> None:
    try:
        domain = normalise_domain(".".join(domain_labels))
    except InvalidDomain:
        return
    assert normalise_domain(domain) == domain
    assert normalise_domain(idna.decode(domain)) == domain
