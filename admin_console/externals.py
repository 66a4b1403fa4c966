"""Who is an external guest, decided in this one place.

The appliance marks externals in their display name (`appliance.identity.EXTERNAL_MARKER`,
"Pierre Dupont [gmail.com] (external)"), so the user list can filter them server-side with the
Admin API's display-name search. Until the rooms-and-externals module decides it for every
account, a user whose email domain is not on the allowlist counts as external too.
"""

from __future__ import annotations

from collections.abc import Iterable

from appliance.domain_allowlist import DomainAllowlist
from appliance.email_address import InvalidEmailAddress, parse_email
from appliance.identity import EXTERNAL_MARKER

__all__ = ["EXTERNAL_MARKER", "is_external", "email_domain_allowed"]


def email_domain_allowed(address: str, allowlist: DomainAllowlist) -> bool:
    try:
        return allowlist.allows(parse_email(address).domain)
    except InvalidEmailAddress:
        return False


def is_external(
    displayname: str | None, emails: Iterable[str] = (), allowlist: DomainAllowlist | None = None
) -> bool:
    if displayname and displayname.endswith(EXTERNAL_MARKER):
        return True
    if allowlist is None:
        return False
    return any(not email_domain_allowed(address, allowlist) for address in emails)
