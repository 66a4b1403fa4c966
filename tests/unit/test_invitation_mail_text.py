# SPDX-License-Identifier: AGPL-3.0-or-later
"""Tests for quoted_text: what an agent chose, made fit for a mail in the server's name."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.synapse_module.externals.invitation_mail import ELLIPSIS, MAX_QUOTED, quoted_text

# A link as a mail client finds one: a scheme, or a host name (two labels joined by a dot).
LINK = re.compile(r"[a-z][a-z0-9+.-]*://|\S[.。][^\s.。]", re.IGNORECASE)


@given(st.text())
def test_any_text_becomes_one_bounded_line_without_links(text):
    quoted = quoted_text(text)

    assert len(quoted) <= MAX_QUOTED
    assert quoted.splitlines() in ([], [quoted])
    assert not any(char in quoted for char in "\r\n\t\v\f\x85\u2028\u2029")
    assert LINK.search(quoted) is None
    assert quoted == quoted.strip()


@given(st.text(alphabet=st.characters(codec="ascii"), max_size=MAX_QUOTED))
def test_quoting_twice_changes_nothing(text):
    assert quoted_text(quoted_text(text)) == quoted_text(text)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Partenaires", "Partenaires"),
        ("Olivier Hote [ac-paris.fr]", "Olivier Hote [ac-paris·fr]"),
        ("Cliquez https://evil.example/x\r\nBcc: victim@x", "Cliquez evil·example/x Bcc: victim@x"),
        # Fullwidth letters, colon, slashes and dot: what NFKC folds, a mail client may too.
        ("ｈｔｔｐｓ：／／evil．example", "evil·example"),
        ("evil\u3002example", "evil·example"),  # the ideographic full stop
        ("www.evil.example", "www·evil·example"),
        ("a\u202eb\u200bc\u2028d", "a b c d"),  # a bidirectional override, zero width, a separator
        ("Fin de phrase. Suite...", "Fin de phrase. Suite..."),  # no dot inside a word here
        ("evil.\u0301example", "evil·\u0301example"),  # a combining accent after the dot
        ("Réunion à 10:30", "Réunion à 10:30"),
    ],
)
def test_examples(text, expected):
    assert quoted_text(text) == expected


def test_a_long_text_is_cut_with_an_ellipsis():
    quoted = quoted_text("Réunion " + "très " * 40 + "longue")

    assert len(quoted) == MAX_QUOTED and quoted.endswith(ELLIPSIS)
    assert quoted.startswith("Réunion très très")
