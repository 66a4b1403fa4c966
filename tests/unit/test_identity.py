# SPDX-License-Identifier: AGPL-3.0-or-later
"""Tests for appliance.addresses.identity: Matrix localparts and display names."""

from __future__ import annotations

import re
from itertools import islice

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.addresses.email_address import EmailAddress, InvalidEmailAddress, parse_email
from appliance.addresses.identity import (
    DEFAULT_MAX_CANDIDATES,
    EXTERNAL_MARKER,
    NAME_ONLY_EXTERNALS_MARKED,
    NAME_PART_CHARACTERS,
    NAME_PART_LENGTH,
    NAME_PART_MAX_LENGTH,
    NAME_SUFFIX_REQUIRED,
    candidate_localparts,
    display_name_for,
    display_name_problem,
    localpart_for,
)


def _synapse_map_username_to_mxid_localpart(username: str) -> str:
    """Reference: the algorithm of Synapse's map_username_to_mxid_localpart
    (case-insensitive mode), rewritten here so the test does not need Synapse."""
    data = username.encode("utf-8").lower()
    data = re.sub(rb"[^_\-./a-z0-9]", lambda m: b"=%02x" % m.group()[0], data)
    data = re.sub(rb"^_", b"=5f", data)
    return data.decode("ascii")


LOCALPARTS = [
    ("plain", "pierre.dupont@ac-paris.fr", "pierre.dupont-ac-paris.fr"),
    ("upper-case", "Pierre.Dupont@AC-PARIS.FR", "pierre.dupont-ac-paris.fr"),
    ("hyphens", "jean-marc.le-goff@x.fr", "jean-marc.le-goff-x.fr"),
    ("underscore-kept", "jean_marc@x.fr", "jean_marc-x.fr"),
    ("plus-escaped", "pierre+tchap@x.fr", "pierre=2btchap-x.fr"),
    ("apostrophe-escaped", "o'brien@x.fr", "o=27brien-x.fr"),
    ("leading-underscore-escaped", "_admin@x.fr", "=5fadmin-x.fr"),
    ("idn-domain-in-punycode", "a@école.fr", "a-xn--cole-9oa.fr"),
]


@pytest.mark.parametrize(
    ("raw", "expected"), [c[1:] for c in LOCALPARTS], ids=[c[0] for c in LOCALPARTS]
)
def test_localpart_for(raw: str, expected: str) -> None:
    assert localpart_for(parse_email(raw)) == expected


def test_candidates_start_with_the_localpart_then_number() -> None:
    email = parse_email("pierre.dupont@ac-paris.fr")
    assert list(islice(candidate_localparts(email), 3)) == [
        "pierre.dupont-ac-paris.fr",
        "pierre.dupont-ac-paris.fr-2",
        "pierre.dupont-ac-paris.fr-3",
    ]


def test_candidates_are_bounded_and_distinct() -> None:
    email = parse_email("a@x.fr")
    candidates = list(candidate_localparts(email))
    assert len(candidates) == DEFAULT_MAX_CANDIDATES == len(set(candidates))
    assert list(candidate_localparts(email, max_candidates=1)) == ["a-x.fr"]
    with pytest.raises(ValueError):
        candidate_localparts(email, max_candidates=0)


def test_the_join_is_not_injective_which_is_why_candidates_exist() -> None:
    assert localpart_for(parse_email("a-b@c.fr")) == localpart_for(parse_email("a@b-c.fr"))


DISPLAY_NAMES = [
    ("dotted", "pierre.dupont@ac-paris.fr", "Pierre Dupont [ac-paris.fr]"),
    ("hyphenated-parts", "jean-marc.le-goff@x.fr", "Jean-Marc Le-Goff [x.fr]"),
    ("underscore", "marie_curie@x.fr", "Marie Curie [x.fr]"),
    ("digits-kept", "agent007.bond@x.fr", "Agent007 Bond [x.fr]"),
    ("leading-digit", "2pac@x.fr", "2pac [x.fr]"),
    ("apostrophe", "o'brien@x.fr", "O'Brien [x.fr]"),
    ("plus-tag-left-out", "pierre.dupont+tchap@x.fr", "Pierre Dupont [x.fr]"),
    ("repeated-separators", "a__b._c@x.fr", "A B C [x.fr]"),
    ("nothing-left-falls-back-to-local", "+tag@x.fr", "+tag [x.fr]"),
    ("idn-domain-in-unicode", "a.b@ÉCOLE.fr", "A B [école.fr]"),
    ("upper-case-input", "PIERRE.DUPONT@AC-PARIS.FR", "Pierre Dupont [ac-paris.fr]"),
]


@pytest.mark.parametrize(
    ("raw", "expected"), [c[1:] for c in DISPLAY_NAMES], ids=[c[0] for c in DISPLAY_NAMES]
)
def test_display_name_for(raw: str, expected: str) -> None:
    assert display_name_for(parse_email(raw)) == expected


def test_external_display_name_format() -> None:
    email = parse_email("pierre.dupont@gmail.com")
    assert display_name_for(email, external=True) == "Pierre Dupont [gmail.com] (external)"
    assert EXTERNAL_MARKER == "(external)"


def test_external_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        display_name_for(parse_email("a@x.fr"), True)  # type: ignore[misc]


# --- properties ------------------------------------------------------------------

addresses = st.builds(
    lambda local, domain: f"{local}@{domain}",
    st.text("abcdefghijklmnopqrstuvwxyzABC0123456789._-+'", min_size=1, max_size=20),
    st.sampled_from(["x.fr", "ac-paris.fr", "école.fr", "a.b.gouv.fr"]),
)


def _parse_or_none(raw: str) -> EmailAddress | None:
    try:
        return parse_email(raw)
    except InvalidEmailAddress:
        return None


@given(addresses)
def test_localpart_is_valid_and_matches_synapse(raw: str) -> None:
    email = _parse_or_none(raw)
    if email is None:
        return
    localpart = localpart_for(email)
    assert re.fullmatch(r"[a-z0-9._=\-/]+", localpart)
    assert not localpart.startswith("_")
    assert localpart == _synapse_map_username_to_mxid_localpart(f"{email.local}-{email.domain}")


@given(addresses, addresses)
def test_distinct_local_parts_on_one_domain_give_distinct_localparts(
    raw_a: str, raw_b: str
) -> None:
    a, b = _parse_or_none(raw_a), _parse_or_none(raw_b.split("@")[0] + "@" + raw_a.split("@")[1])
    if a is None or b is None:
        return
    assert (localpart_for(a) == localpart_for(b)) == (a == b)


@given(addresses, st.booleans())
def test_display_name_has_exactly_one_bracketed_domain(raw: str, external: bool) -> None:
    email = _parse_or_none(raw)
    if email is None:
        return
    name = display_name_for(email, external=external)
    assert name.count("[") == name.count("]") == 1
    suffix = f"[{email.unicode_domain}]" + (f" {EXTERNAL_MARKER}" if external else "")
    assert name.endswith(suffix)
    assert name[: -len(suffix)].strip()


# --- chosen display names: what may change, and what never ---------------------------------------

AGENT = [parse_email("pierre.dupont@ac-paris.fr")]
GUEST = [parse_email("sam@gmail.com")]
AGENT_TAG_WRONG = NAME_SUFFIX_REQUIRED.format(suffix="[ac-paris.fr]")
GUEST_TAG_WRONG = NAME_SUFFIX_REQUIRED.format(suffix="[gmail.com] (external)")

ACCEPTED = {
    "derived": ("Pierre Dupont [ac-paris.fr]", AGENT, False),
    "renamed": ("Pierre-Louis Dupont [ac-paris.fr]", AGENT, False),
    "accents and apostrophe": ("Hélène d\u2019Arc-O'Neil [ac-paris.fr]", AGENT, False),
    "initial and digits": ("P. Dupont 2 [ac-paris.fr]", AGENT, False),
    "external renamed": ("Sam Smith [gmail.com] (external)", GUEST, True),
    "no address": ("Service Desk", [], False),
}
REFUSED = {
    "another domain's tag": ("Pierre Dupont [interieur.gouv.fr]", AGENT, False, AGENT_TAG_WRONG),
    "forged tag before the real one": (
        "Pierre [interieur.gouv.fr] [ac-paris.fr]",
        AGENT,
        False,
        NAME_PART_CHARACTERS,
    ),
    "no tag": ("Pierre Dupont", AGENT, False, AGENT_TAG_WRONG),
    "agent with the marker": (
        "Pierre Dupont [ac-paris.fr] (external)",
        AGENT,
        False,
        NAME_ONLY_EXTERNALS_MARKED,
    ),
    "external without the marker": ("Sam [gmail.com]", GUEST, True, GUEST_TAG_WRONG),
    "external with an agent's tag": ("Sam [ac-paris.fr]", GUEST, True, GUEST_TAG_WRONG),
    "marker hidden by a zero-width space": (
        "Sam [gmail.com] (ext\u200bernal)",
        GUEST,
        True,
        GUEST_TAG_WRONG,
    ),
    "Cyrillic look-alike of the marker": (
        "Sam [gmail.com] (\u0435xt\u0435rnal)",
        GUEST,
        True,
        GUEST_TAG_WRONG,
    ),
    "fake marker in the name part": (
        "Sam (external) [ac-paris.fr]",
        AGENT,
        False,
        NAME_PART_CHARACTERS,
    ),
    "zero-width space": ("Pierre\u200bDupont [ac-paris.fr]", AGENT, False, NAME_PART_CHARACTERS),
    "right-to-left override": (
        "Pierre \u202e)lanretxe( [ac-paris.fr]",
        AGENT,
        False,
        NAME_PART_CHARACTERS,
    ),
    "Cyrillic letters": ("\u0420ierre [ac-paris.fr]", AGENT, False, NAME_PART_CHARACTERS),
    "fullwidth letters": ("\uff30ierre [ac-paris.fr]", AGENT, False, NAME_PART_CHARACTERS),
    "no-break space": ("Pierre\u00a0Dupont [ac-paris.fr]", AGENT, False, NAME_PART_CHARACTERS),
    "double space": ("Pierre  Dupont [ac-paris.fr]", AGENT, False, NAME_PART_CHARACTERS),
    "combining accent": ("Pierre\u0301 [ac-paris.fr]", AGENT, False, NAME_PART_CHARACTERS),
    "newline": ("Pierre\n [ac-paris.fr]", AGENT, False, NAME_PART_CHARACTERS),
    "empty name part": (" [ac-paris.fr]", AGENT, False, NAME_PART_LENGTH),
    "too long": (
        "P" * (NAME_PART_MAX_LENGTH + 1) + " [ac-paris.fr]",
        AGENT,
        False,
        NAME_PART_LENGTH,
    ),
    "ten thousand characters": ("P" * 10_000 + " [ac-paris.fr]", AGENT, False, NAME_PART_LENGTH),
    "no address, forged tag": ("Desk [interieur.gouv.fr]", [], False, NAME_PART_CHARACTERS),
    "no address, marker": ("Desk (external)", [], False, NAME_ONLY_EXTERNALS_MARKED),
}


@pytest.mark.parametrize(("name", "addresses", "external"), ACCEPTED.values(), ids=ACCEPTED.keys())
def test_a_chosen_name_keeps_the_tag_and_marker(name, addresses, external) -> None:
    assert display_name_problem(name, addresses, external=external) is None


@pytest.mark.parametrize(
    ("name", "addresses", "external", "problem"), REFUSED.values(), ids=REFUSED.keys()
)
def test_a_name_that_lies_is_refused_with_its_reason(name, addresses, external, problem) -> None:
    assert display_name_problem(name, addresses, external=external) == problem


@given(st.text(max_size=80), st.booleans())
def test_an_accepted_name_ends_with_the_real_suffix_and_hides_nothing(
    chosen: str, external: bool
) -> None:
    addresses = GUEST if external else AGENT
    suffix = "[gmail.com] (external)" if external else "[ac-paris.fr]"
    for name in (chosen, f"{chosen} {suffix}"):
        if display_name_problem(name, addresses, external=external) is None:
            assert name.endswith(f" {suffix}")
            part = name[: -len(suffix) - 1]
            assert not set(part) & set("[]()\u200b\u202e\u00a0") and part.isprintable()
            assert part.count("[") == 0 and EXTERNAL_MARKER not in part
