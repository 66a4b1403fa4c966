"""Who is an external guest, decided in this one place.

The appliance marks externals in their display name (`appliance.addresses.identity.EXTERNAL_MARKER`,
"Pierre Dupont [gmail.com] (external)"), so the user list can filter them server-side with the
Admin API's display-name search. Until the rooms-and-externals module decides it for every
account, a user with an email address whose domain is not allowed counts as external too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from appliance.addresses.identity import EXTERNAL_MARKER

__all__ = ["EXTERNAL_MARKER", "DomainCheck", "is_external"]

# An email address -> whether its domain is allowed (the module's one-address lookup).
DomainCheck = Callable[[str], bool]


def is_external(
    displayname: str | None, emails: Iterable[str] = (), domain_allowed: DomainCheck | None = None
) -> bool:
    if displayname and displayname.endswith(EXTERNAL_MARKER):
        return True
    if domain_allowed is None:
        return False
    return any(not domain_allowed(address) for address in emails)
