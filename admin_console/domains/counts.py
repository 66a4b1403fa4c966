"""How many active accounts each allowlist entry has, one cheap Admin API count per entry.

An agent's display name ends with its domain in brackets ("Pierre Dupont [ac-paris.fr]",
`appliance.identity.display_name_for`), so the Admin API's display-name search counts the
accounts of a domain without listing them: "[ac-paris.fr]" for an exact entry, ".gouv.fr]" for
the wildcard "*.gouv.fr". A user who renamed themselves is not counted.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import idna

from admin_console.synapse_admin import SynapseClient, SynapseRefused, SynapseUnavailable
from admin_console.synapse_admin.users import UserQuery, count_users
from appliance.domain_allowlist import WILDCARD_PREFIX


def search_text(entry: str) -> str:
    wildcard = entry.startswith(WILDCARD_PREFIX)
    domain = entry.removeprefix(WILDCARD_PREFIX)
    try:
        shown = idna.decode(domain)  # display names show the domain in Unicode
    except idna.IDNAError:
        shown = domain
    return f".{shown}]" if wildcard else f"[{shown}]"


def account_counts(synapse: SynapseClient, entries: list[str]) -> dict[str, int | None]:
    """entry -> number of active accounts, or None where Synapse could not say."""

    def count(entry: str) -> int | None:
        try:
            return count_users(synapse, UserQuery(search_text(entry)))
        except (SynapseRefused, SynapseUnavailable):
            return None

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(entries, pool.map(count, entries)))
