# SPDX-License-Identifier: AGPL-3.0-or-later
"""Allowlist of the email domains whose owners may register.

An entry is either an exact domain (``ac-paris.fr``) or an explicit subdomain
wildcard (``*.gouv.fr``), which admits ``x.gouv.fr`` and ``a.b.gouv.fr`` but
never ``gouv.fr`` itself (list it too if it should be admitted) nor
``evilgouv.fr``.  Entries go through the same domain rules as addresses
(:func:`appliance.addresses.email_address.normalise_domain`), so ``ÉCOLE.fr`` and
``xn--cole-9oa.fr`` are one entry, and a typo is refused at load time instead
of silently never matching.

A wildcard on a single label (``*.fr``) is refused: it would open
registration to a whole country or top-level domain.  Multi-label public
suffixes such as ``*.co.uk`` cannot be told apart from organisation domains
without the Public Suffix List, which this module deliberately does without;
``*.gouv.fr`` is exactly such a suffix and is wanted.
"""

from __future__ import annotations

from collections.abc import Iterable

from appliance.addresses.email_address import InvalidDomain, normalise_domain

WILDCARD_PREFIX = "*."


class InvalidDomainEntry(ValueError):
    """An allowlist entry is refused; ``str(exc)`` names the entry and the reason."""


def normalise_domain_entry(raw: str) -> str:
    """Return the canonical form of an entry (``ac-paris.fr`` or ``*.gouv.fr``)."""
    if not isinstance(raw, str):
        raise InvalidDomainEntry(f"invalid allowlist entry {raw!r}: an entry must be text")
    try:
        if "*" in raw:
            return WILDCARD_PREFIX + _normalise_wildcard_suffix(raw)
        return normalise_domain(raw)
    except InvalidDomain as exc:
        raise InvalidDomainEntry(f"invalid allowlist entry {raw!r}: {exc}") from exc


def _normalise_wildcard_suffix(raw: str) -> str:
    if not raw.startswith(WILDCARD_PREFIX):
        if raw.startswith("*"):
            raise InvalidDomain(
                "a wildcard must be followed by a dot, as in '*.gouv.fr' "
                "(which admits the subdomains of gouv.fr)"
            )
        raise InvalidDomain(
            "a wildcard is only allowed as the whole first label, as in '*.gouv.fr'"
        )
    suffix = raw[len(WILDCARD_PREFIX) :]
    if "*" in suffix:
        raise InvalidDomain(
            "only one wildcard is allowed, as the whole first label, as in '*.gouv.fr'"
        )
    normalised = normalise_domain(suffix, min_labels=1)
    if "." not in normalised:
        raise InvalidDomain(
            f"a wildcard directly on the top-level domain '{normalised}' would admit every "
            f"domain under it; list the domains, or use a wildcard under an organisation's "
            f"domain such as '*.gouv.fr'"
        )
    return normalised


class DomainAllowlist:
    """Decides whether a normalised domain is admitted.

    A decision costs one set look-up per label of the domain, whatever the
    size of the list: the domain itself is looked up among exact entries,
    then each of its proper parent suffixes among wildcard suffixes.
    """

    __slots__ = ("_exact", "_wildcard_suffixes")

    def __init__(self, entries: Iterable[str]) -> None:
        """Build from entries, which are (re-)normalised: that is idempotent.

        Raises :class:`InvalidDomainEntry` on the first invalid entry.
        """
        if isinstance(entries, str):
            # Iterating a str would load one entry per character.
            raise TypeError("DomainAllowlist expects an iterable of entries, not a single string")
        self._split([normalise_domain_entry(entry) for entry in entries])

    @classmethod
    def from_normalised(cls, entries: Iterable[str]) -> DomainAllowlist:
        """Build from entries already in canonical form (as stored by the module), skipping
        the IDNA work: 100,000 entries load in milliseconds instead of seconds. An entry that
        is not canonical can only fail to match, never admit more."""
        allowlist = cls.__new__(cls)
        allowlist._split(entries)
        return allowlist

    def _split(self, normalised_entries: Iterable[str]) -> None:
        exact: set[str] = set()
        suffixes: set[str] = set()
        for normalised in normalised_entries:
            if normalised.startswith(WILDCARD_PREFIX):
                suffixes.add(normalised[len(WILDCARD_PREFIX) :])
            else:
                exact.add(normalised)
        self._exact = frozenset(exact)
        self._wildcard_suffixes = frozenset(suffixes)

    @property
    def entries(self) -> tuple[str, ...]:
        """The normalised entries, sorted, for display and configuration dumps."""
        wildcards = (WILDCARD_PREFIX + suffix for suffix in self._wildcard_suffixes)
        return tuple(sorted([*self._exact, *wildcards]))

    def __len__(self) -> int:
        return len(self._exact) + len(self._wildcard_suffixes)

    def __repr__(self) -> str:
        return f"DomainAllowlist({list(self.entries)!r})"

    def allows(self, domain: str) -> bool:
        """Whether ``domain`` (already normalised, e.g. ``EmailAddress.domain``) is admitted."""
        return self.matching_entry(domain) is not None

    def matching_entry(self, domain: str) -> str | None:
        """The entry that admits ``domain``, for logs and UI, or None.

        The most specific entry wins: the exact entry, else the wildcard with
        the longest suffix.  A domain that is not in normalised form raises
        ValueError rather than being judged, because it can only come from a
        caller that skipped :func:`parse_email`, and e.g. an unchecked
        ``xn--bogus.gouv.fr`` would otherwise pass ``*.gouv.fr``.
        """
        _require_normalised(domain)
        if domain in self._exact:
            return domain
        dot = domain.find(".")
        while dot != -1:
            suffix = domain[dot + 1 :]
            if suffix in self._wildcard_suffixes:
                return WILDCARD_PREFIX + suffix
            dot = domain.find(".", dot + 1)
        return None


def _require_normalised(domain: str) -> None:
    try:
        normalised = normalise_domain(domain)
    except InvalidDomain as exc:
        raise ValueError(f"not a valid domain: {domain!r} ({exc})") from exc
    if normalised != domain:
        raise ValueError(f"domain {domain!r} is not normalised (expected {normalised!r})")
