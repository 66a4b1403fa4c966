# SPDX-License-Identifier: AGPL-3.0-or-later
"""Single sign-on (OpenID Connect): who the provider's user becomes on this server.

Synapse loads :class:`AgentMappingProvider` as the ``user_mapping_provider`` of the appliance's
``oidc_providers`` entry (rendered from ``auth.oidc`` in appliance.yaml) and calls it after the
provider has signed the user in, when Synapse does not already know the provider's subject
(``sub``).  The contract (Synapse 1.163's ``OidcMappingProvider``, checked against
``synapse/handlers/oidc.py``):

* the address in the email claim must be verified (``email_verified``, when the provider sends
  it, must be true; with ``require_email_verified``, from ``auth.oidc.require_email_verified``,
  a provider that sends no such claim is refused too) and of a domain on the allowlist, read
  fresh from the database at each sign-in; otherwise :class:`MappingException` with one of the
  messages below, which Synapse shows on its error page, and no account is created.
  Externals (domains not on the list) never sign in here: they keep the email invitation flow;
* the Matrix ID is derived from the address exactly as email registration derives it
  (:func:`appliance.addresses.identity.candidate_localparts`), the first one free; the display
  name is ``Given Family [domain]`` from the name claims (ProConnect says ``usual_name`` for
  the family name: the claim names are settings), else derived from the address as email
  registration does (:func:`appliance.addresses.identity.display_name_for`);
* an account already bound to that address (registered by email, or a previous sign-in) is
  signed into, not duplicated: its own ID is returned and the provider entry has
  ``allow_existing_users``.  A derived ID taken by *another* address's account (``a-b@c.fr``
  and ``a@b-c.fr`` both derive ``a-b-c.fr``) is skipped, never signed into;
* the address is bound to a new account, so password reset and the directory find it.

Synapse remembers the subject once an account is signed into, and later sign-ins of that
subject no longer come here (as removing a domain does not lock out existing agents, see
``registration.py``).  ``check_registration_for_spam`` lets Synapse's SSO registrations
through for this reason: this provider has admitted their address.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from synapse.handlers.sso import MappingException
from synapse.module_api import ModuleApi

from appliance.addresses.email_address import EmailAddress, InvalidEmailAddress, parse_email
from appliance.addresses.identity import candidate_localparts, display_name_for, name_part_problem
from appliance.synapse_module.accounts.domain_store import read_allowlist
from appliance.synapse_module.accounts.registration import Verdict, decide
from appliance.synapse_module.synapse_internals import SynapseInternals

logger = logging.getLogger(__name__)

# Shown on Synapse's error page (its "mapping_error"); tests assert them.
NO_EMAIL = "Your identity provider did not give this server your email address ({claim})."
UNVERIFIED_EMAIL = (
    "Your identity provider has not verified the email address {address}: "
    "this server admits only verified addresses."
)
REFUSED_ADDRESS = "This server cannot admit you: {reason}."
ALLOWLIST_UNAVAILABLE = (
    "The list of allowed domains cannot be read right now; try again in a moment."
)
NO_FREE_ID = "No Matrix ID can be made from the address {address}; contact the administrator."

# Characters a name claim may not bring into a display name: the brackets and parentheses of
# the "[domain]" tag and the "(external)" marker, which no provider may forge.
_FORGING = str.maketrans("", "", "[]()")
# Each name claim is cut to this many characters: Synapse's display names hold 256 at most, and
# the domain tag must fit after both names.
MAX_NAME_LENGTH = 80


@dataclass(frozen=True)
class MappingConfig:
    email_claim: str = "email"
    given_name_claim: str = "given_name"
    family_name_claim: str = "family_name"
    require_email_verified: bool = False


class AgentMappingProvider:
    """Synapse's OIDC ``user_mapping_provider.module`` for the appliance (see the module doc)."""

    def __init__(self, config: MappingConfig, module_api: ModuleApi) -> None:
        self._config = config
        self._api = module_api
        self._internals = SynapseInternals(module_api)

    @staticmethod
    def parse_config(config: dict) -> MappingConfig:
        """Synapse's ``parse_config``: the claim names, each a non-empty string."""
        values = {}
        for key in ("email_claim", "given_name_claim", "family_name_claim"):
            value = config.get(key, getattr(MappingConfig, key))
            if not isinstance(value, str) or not value:
                raise ValueError(f"user_mapping_provider.config.{key}: must be a claim name")
            values[key] = value
        strict = config.get("require_email_verified", False)
        if not isinstance(strict, bool):
            raise ValueError(
                "user_mapping_provider.config.require_email_verified: must be a boolean"
            )
        return MappingConfig(**values, require_email_verified=strict)

    def get_remote_user_id(self, userinfo: Any) -> str:
        """Synapse's ``get_remote_user_id``: the provider's stable subject (``sub``)."""
        return str(userinfo["sub"])

    async def map_user_attributes(self, userinfo: Any, token: Any, failures: int) -> dict:
        """Synapse's ``map_user_attributes``.

        Args:
            userinfo: the provider's claims (ID token and userinfo).
            token: the provider's tokens (unused).
            failures: how many derived IDs Synapse found taken since the last call (a race
                with another registration): that many free candidates are skipped.

        Returns:
            ``localpart`` (the existing account's, or the first free derived one),
            ``display_name``, ``emails`` (the address, bound to a new account),
            ``confirm_localpart`` False.

        Raises:
            MappingException: the address is missing, unverified, invalid or not allowed, or
                the allowlist cannot be read; Synapse shows the message, creates nothing.
        """
        email = await self._admitted_email(userinfo)
        existing = await self._internals.user_of_email(email.address)
        if existing is not None:
            localpart = existing[1:].split(":", 1)[0]
            logger.info("single sign-on of %s: the address's account", existing)
        else:
            localpart = await self._free_localpart(email, skip=failures)
        return {
            "localpart": localpart,
            "display_name": self._display_name(userinfo, email),
            "emails": [email.address],
            "confirm_localpart": False,
        }

    async def get_extra_attributes(self, userinfo: Any, token: Any) -> dict:
        """Synapse's ``get_extra_attributes``: nothing more is passed to the client."""
        return {}

    async def _admitted_email(self, userinfo: Any) -> EmailAddress:
        raw = userinfo.get(self._config.email_claim)
        if not isinstance(raw, str) or not raw.strip():
            raise MappingException(NO_EMAIL.format(claim=self._config.email_claim))
        verified = userinfo.get("email_verified", not self._config.require_email_verified)
        if verified is not True and str(verified).lower() != "true":
            raise MappingException(UNVERIFIED_EMAIL.format(address=raw))
        try:
            email = parse_email(raw.strip())
        except InvalidEmailAddress as error:
            raise MappingException(REFUSED_ADDRESS.format(reason=error)) from None
        try:
            allowlist = await read_allowlist(self._api)
        except Exception:
            logger.exception("single sign-on refused: the allowlist cannot be read")
            raise MappingException(ALLOWLIST_UNAVAILABLE) from None
        # The provider verified the address; its canonical spelling is what this server binds.
        admission = decide(email.address, allowlist, server_name=self._api.server_name)
        if admission.verdict is Verdict.NOT_ALLOWED:
            # The registration reason ends with "can only join by invitation": that is the
            # email flow, not this page's.
            reason = admission.reason.split(":", 1)[0]
            logger.info("single sign-on refused: %s", reason)
            raise MappingException(REFUSED_ADDRESS.format(reason=reason))
        if not admission.allowed:
            logger.info("single sign-on refused: %s", admission.reason)
            raise MappingException(REFUSED_ADDRESS.format(reason=admission.reason))
        return email

    async def _free_localpart(self, email: EmailAddress, *, skip: int) -> str:
        for localpart in candidate_localparts(email):
            if await self._api.check_user_exists(self._api.get_qualified_user_id(localpart)):
                continue  # another address's account (or a service account): never signed into
            if skip == 0:
                return localpart
            skip -= 1
        raise MappingException(NO_FREE_ID.format(address=email.address))

    def _display_name(self, userinfo: Any, email: EmailAddress) -> str:
        given = _name_claim(userinfo.get(self._config.given_name_claim))
        family = _name_claim(userinfo.get(self._config.family_name_claim))
        # The same rule as a name an agent picks (accounts/display_names.py): look-alike
        # brackets, invisible or bidi characters fall back to the name from the address.
        if given and family and name_part_problem(f"{given} {family}") is None:
            return f"{given} {family} [{email.unicode_domain}]"
        return display_name_for(email)


def _name_claim(value: object) -> str:
    if not isinstance(value, str):
        return ""
    return " ".join(value.translate(_FORGING).split())[:MAX_NAME_LENGTH].strip()
