# SPDX-License-Identifier: AGPL-3.0-or-later
"""Inviting an agent: a mail telling them how to register with their professional address.

Synapse has no "invite by email" for registration (its own mails only verify an address a
client has already typed), so the console sends this one. Only an address whose domain is on
the allowlist can register; others are refused here with that reason (externals are invited
into a room by an agent, not from the console).
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, render_template
from flask_babel import gettext as _

from admin_console import mailer
from admin_console.externals import DomainCheck
from admin_console.synapse_admin import EndpointMissing, SynapseRefused, SynapseUnavailable
from appliance.addresses.email_address import InvalidEmailAddress, parse_email


@dataclass(frozen=True)
class Outcome:
    address: str
    sent: bool
    reason: str = ""


def parse_addresses(text: str) -> list[str]:
    return list(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))


def invite(raw_address: str, domain_allowed: DomainCheck) -> Outcome:
    try:
        address = parse_email(raw_address)
    except InvalidEmailAddress as error:
        return Outcome(raw_address, False, _("not a valid address: %(error)s", error=str(error)))
    try:
        allowed = domain_allowed(address.address)
    except EndpointMissing:
        raise  # the whole page says the module is missing, not each address
    except (SynapseRefused, SynapseUnavailable) as error:
        return Outcome(
            address.address,
            False,
            _(
                "whether %(domain)s is allowed cannot be known: %(error)s",
                domain=address.domain,
                error=str(error),
            ),
        )
    if not allowed:
        return Outcome(
            address.address,
            False,
            _(
                "%(domain)s is not an allowed domain: add it first, or invite this person into "
                "a room open to externals",
                domain=address.domain,
            ),
        )
    config = current_app.config
    body = render_template(
        "mail/invitation.txt",
        address=address.address,
        server_name=config["SERVER_NAME_MATRIX"],
        public_baseurl=config["PUBLIC_BASEURL"],
    )
    try:
        mailer.send(address.address, f"Invitation: {config['SERVER_NAME_MATRIX']}", body)
    except mailer.MailNotSent as error:
        return Outcome(address.address, False, str(error))
    return Outcome(address.address, True)
