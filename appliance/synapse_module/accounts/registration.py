# SPDX-License-Identifier: AGPL-3.0-or-later
"""Registration policy: who may register or bind an email address, and the identity they get.

Synapse calls these callbacks (contracts as in Synapse 1.163's module API, checked against its
source):

* ``is_3pid_allowed``: before a verification mail is sent for registration or for adding an
  address to an account, and again when ``/register`` completes.  A refusal is Synapse's
  403 ``M_THREEPID_DENIED`` (its message cannot be changed; the domain is named by the
  identity lookup, ``GET /_matrix/identity/api/v1/info``, and in the log).
  An address of a domain not on the list is admitted to register (never to be added to an
  existing account) while an agent's email invitation waits for it (``invitations.py``); its
  account is an external's, and its display name carries the "(external)" marker.
  Synapse asks nothing when a validated session is used (``/register`` asks again, but
  ``/account/3pid/add`` does not), and its sessions do not record what they were opened for:
  only ``enable_3pid_changes: false`` (homeserver.yaml) keeps a session opened to register,
  say by an invited external, from attaching its address to an agent's account.
* ``get_username_for_registration`` / ``get_displayname_for_registration``: the Matrix ID and
  display name come from the verified address, Tchap-style; a username proposed by the client
  is ignored (``inhibit_user_in_use_error`` keeps a taken one from failing early).
* ``check_registration_for_spam``: the last gate inside ``register_user``.  A client
  registration must carry a verified, admitted address and the derived localpart.  Server-side
  registrations (the shared-secret Admin API that creates the console's service account, an
  admin creating a user) carry no address and no client request, and stay allowed: they are
  authenticated by the registration secret or an admin token.  Synapse turns a refusal here into
  a 429, which is acceptable only because the earlier gates refuse first with a clear 403.

Password reset: Synapse does not consult modules for it, and the rule is that it needs none.
A reset only re-proves control of an address already bound to an account, and every binding
went through ``is_3pid_allowed``; an address of a domain that was never allowed has no account,
and no reset mail is sent to it (Synapse answers as if one were:
``request_token_inhibit_3pid_errors``).  Removing a domain stops new registrations and new
bindings from it; it does not lock out the agents who already have an account (nor, later,
invited externals, whose domains are not on the list).  Cutting an existing account off is an
explicit administrator act: deactivation, which also unbinds its addresses.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from enum import Enum
from typing import Any

from synapse.module_api import ModuleApi
from synapse.spam_checker_api import RegistrationBehaviour

from appliance.addresses.domain_allowlist import DomainAllowlist
from appliance.addresses.email_address import EmailAddress, InvalidEmailAddress, parse_email
from appliance.addresses.identity import candidate_localparts, display_name_for, localpart_for
from appliance.operations import metrics

logger = logging.getLogger(__name__)

EMAIL_STAGE = "m.login.email.identity"
# Synapse's identifier of the appliance's OpenID provider, whose mapping provider
# (sso_mapping.py) admits the verified address before Synapse registers the account.
SSO_PROVIDER_ID = "oidc-appliance"
MAX_USER_ID_LENGTH = 255  # the Matrix spec's limit, which Synapse enforces

AllowlistSource = Callable[[], "DomainAllowlist | None"]
# Whether an agent's email invitation waits for this (canonical) address: see invitations.py.
InvitationCheck = Callable[[str], Awaitable[bool]]
# The peer that owns a domain (anything with a server_name), or None.
OwnerLookup = Callable[[str], Any]


class Verdict(Enum):
    ADMITTED = "admitted"
    NOT_ALLOWED = "not_allowed"  # a valid address of a domain that is not on the list
    INVALID_ADDRESS = "invalid_address"
    UNAVAILABLE = "unavailable"  # the list cannot be trusted right now: refuse


@dataclass(frozen=True)
class Admission:
    verdict: Verdict
    reason: str  # for people: names the domain or says what is wrong with the address
    email: EmailAddress | None = None

    @property
    def allowed(self) -> bool:
        return self.verdict is Verdict.ADMITTED


def decide(
    address: str, allowlist: DomainAllowlist | None, *, server_name: str | None = None
) -> Admission:
    """Whether ``address`` may be verified on this server, and why not.

    ``server_name`` is given for registration, to refuse an address whose derived Matrix ID
    would be too long before any mail is sent.
    """
    try:
        email = parse_email(address)
    except InvalidEmailAddress as error:
        return Admission(Verdict.INVALID_ADDRESS, f"the address {address!r} is refused: {error}")
    # Synapse verifies, binds and mails the address as given (lower-cased), so it must already
    # be the normalised spelling: otherwise one mailbox could hold several accounts through
    # look-alike spellings (fullwidth letters, Unicode and punycode forms of one domain).
    if email.address != address.lower():
        return Admission(
            Verdict.INVALID_ADDRESS,
            f"write the address as {email.address}: this server verifies addresses only in "
            "that form",
            email,
        )
    if (
        server_name is not None
        and len(_user_id(localpart_for(email), server_name)) > MAX_USER_ID_LENGTH
    ):
        return Admission(
            Verdict.INVALID_ADDRESS,
            f"the Matrix ID made from this address would be longer than {MAX_USER_ID_LENGTH} "
            "characters",
            email,
        )
    if allowlist is None:
        return Admission(
            Verdict.UNAVAILABLE,
            "the list of allowed domains cannot be read right now; try again in a moment",
            email,
        )
    if allowlist.matching_entry(email.domain) is None:
        return Admission(
            Verdict.NOT_ALLOWED,
            f"the domain {_shown_domain(email)} is not among the domains allowed on this "
            "server: an address of this domain can only join by invitation",
            email,
        )
    return Admission(Verdict.ADMITTED, f"the domain {_shown_domain(email)} is allowed", email)


def _user_id(localpart: str, server_name: str) -> str:
    return f"@{localpart}:{server_name}"


def _shown_domain(email: EmailAddress) -> str:
    # The ASCII form is the unambiguous one; the Unicode form helps people read it.
    unicode_domain = email.unicode_domain
    return email.domain if unicode_domain == email.domain else f"{email.domain} ({unicode_domain})"


def verified_email(uia_results: dict) -> EmailAddress | None:
    """The address proven by the email stage of a completed registration, if any."""
    threepid = uia_results.get(EMAIL_STAGE)
    if not isinstance(threepid, dict) or threepid.get("medium") != "email":
        return None
    address = threepid.get("address")
    if not isinstance(address, str):
        return None
    try:
        return parse_email(address)
    except InvalidEmailAddress:
        return None


async def _no_invitation(address: str) -> bool:
    return False


def _no_owner(domain: str) -> None:
    return None


class RegistrationPolicy:
    def __init__(
        self,
        api: ModuleApi,
        allowlist: AllowlistSource,
        invited: InvitationCheck = _no_invitation,
        owner_of: OwnerLookup = _no_owner,
    ) -> None:
        self._api = api
        self._allowlist = allowlist
        self._invited = invited
        # In a network of appliances: the peer that owns an address's domain, if any.
        self._owner_of = owner_of

    def register(self) -> None:
        self._api.register_password_auth_provider_callbacks(
            is_3pid_allowed=self.is_3pid_allowed,
            get_username_for_registration=self.get_username_for_registration,
            get_displayname_for_registration=self.get_displayname_for_registration,
        )
        self._api.register_spam_checker_callbacks(
            check_registration_for_spam=self.check_registration_for_spam
        )

    def _decide(self, address: str, *, registration: bool) -> Admission:
        server_name = self._api.server_name if registration else None
        return decide(address, self._allowlist(), server_name=server_name)

    async def _admission(self, address: str, *, registration: bool) -> Admission:
        """The allowlist's decision; an invitation also admits its address, to register only."""
        admission = self._decide(address, registration=registration)
        email = admission.email
        owner = self._owner_of(email.domain) if email else None
        if admission.verdict is Verdict.NOT_ALLOWED and email is not None and owner is not None:
            # Its account belongs on its own server, even when an invitation waits here.
            reason = f"{email.domain} belongs to {owner.server_name}: register there"
            return Admission(Verdict.NOT_ALLOWED, reason, admission.email)
        if (
            registration
            and admission.verdict is Verdict.NOT_ALLOWED
            and admission.email is not None
            and await self._invited(admission.email.address)
        ):
            invited = f"{admission.email.address} is invited"
            return Admission(Verdict.ADMITTED, invited, admission.email)
        return admission

    async def is_3pid_allowed(self, medium: str, address: str, registration: bool) -> bool:
        """Synapse's ``is_3pid_allowed`` (password auth provider callback).

        Args:
            medium: ``email`` (anything else is refused).
            address: the address as the client sent it.
            registration: True while registering, False when adding it to an account.

        Returns:
            Whether Synapse may verify and bind the address; False becomes Synapse's 403
            ``M_THREEPID_DENIED``.
        """
        if medium != "email":
            logger.info("refused a %s third-party identifier: only email is accepted", medium)
            return False
        admission = await self._admission(address, registration=registration)
        if not admission.allowed:
            what = "registration" if registration else "adding an address"
            logger.info("refused %s: %s", what, admission.reason)
            metrics.REFUSALS.labels(f"email_{admission.verdict.value}").inc()
        return admission.allowed

    async def get_username_for_registration(self, uia_results: dict, params: dict) -> str | None:
        """Synapse's ``get_username_for_registration`` (password auth provider callback).

        Args:
            uia_results: the completed stages of the registration (the email stage's address).
            params: the client's request body; its ``username`` is ignored.

        Returns:
            The localpart derived from the verified address (the first one free), or None
            when no address was verified (``check_registration_for_spam`` then refuses).
        """
        email = verified_email(uia_results)
        if email is None:
            return None  # no verified address: check_registration_for_spam refuses
        return await self._free_localpart(email)

    async def _free_localpart(self, email: EmailAddress) -> str:
        for localpart in candidate_localparts(email):
            user_id = self._api.get_qualified_user_id(localpart)
            if len(user_id) > MAX_USER_ID_LENGTH:
                break
            if await self._api.check_user_exists(user_id) is None:
                return localpart
        # Synapse refuses this one with a clear M_USER_IN_USE or M_INVALID_USERNAME.
        logger.error("no free Matrix ID short enough for an address of %s", email.domain)
        return localpart_for(email)

    async def get_displayname_for_registration(self, uia_results: dict, params: dict) -> str | None:
        """Synapse's ``get_displayname_for_registration`` (password auth provider callback).

        Returns:
            ``Name [domain]`` from the verified address, with the external marker for a domain
            not on the allowlist; None when no address was verified.
        """
        email = verified_email(uia_results)
        if email is None:
            return None
        external = self._decide(email.address, registration=True).verdict is Verdict.NOT_ALLOWED
        return display_name_for(email, external=external)

    async def check_registration_for_spam(
        self,
        email_threepid: dict | None,
        username: str | None,
        request_info: Collection[tuple[str, str]],
        auth_provider_id: str | None = None,
    ) -> RegistrationBehaviour:
        """Synapse's ``check_registration_for_spam`` (spam checker callback), the last gate.

        Args:
            email_threepid: the verified email threepid, or None.
            username: the localpart about to be registered.
            request_info: (user agent, IP) pairs of the client's request; empty server-side.
            auth_provider_id: the single sign-on provider, if any.

        Returns:
            ``ALLOW`` for an admitted address with its derived localpart, or a server-side
            registration (shared secret, admin); ``DENY`` otherwise (Synapse answers 429).
        """
        if email_threepid is None:
            if not request_info and auth_provider_id is None:
                metrics.REGISTRATIONS.labels("server").inc()
                return RegistrationBehaviour.ALLOW  # server-side: shared secret or admin token
            if auth_provider_id == SSO_PROVIDER_ID:
                metrics.REGISTRATIONS.labels("sso").inc()
                return RegistrationBehaviour.ALLOW  # single sign-on: sso_mapping.py admitted it
            logger.warning("refused registration of %r: no verified email address", username)
            metrics.REFUSALS.labels(metrics.REGISTRATION_NO_EMAIL).inc()
            return RegistrationBehaviour.DENY
        admission = await self._admission(email_threepid.get("address", ""), registration=True)
        if not admission.allowed or admission.email is None:
            logger.warning("refused registration of %r: %s", username, admission.reason)
            metrics.REFUSALS.labels(metrics.REGISTRATION_NOT_ALLOWED).inc()
            return RegistrationBehaviour.DENY
        if username is None or username not in candidate_localparts(admission.email):
            # Another module or a config change let a chosen username through.
            logger.warning("refused registration of %r: not derived from its address", username)
            metrics.REFUSALS.labels(metrics.REGISTRATION_USERNAME).inc()
            return RegistrationBehaviour.DENY
        # Admitted but not on the allowlist: an external, invited by email.
        listed = self._decide(admission.email.address, registration=True)
        kind = "external" if listed.verdict is Verdict.NOT_ALLOWED else "agent"
        metrics.REGISTRATIONS.labels(kind).inc()
        return RegistrationBehaviour.ALLOW
