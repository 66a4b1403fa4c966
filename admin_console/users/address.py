# SPDX-License-Identifier: AGPL-3.0-or-later
"""Changing an agent's email address (a ministry renamed or merged): the same Matrix ID, a new
address.

The new address must be of an allowed domain (the module decides, as at registration) and
belong to no other account. One Admin API call binds it in place of the old one and moves the
display name's ``[domain]`` tag to the new domain (Synapse also drops the email pusher of the
old address). Password reset and single sign-on find accounts by their bound address, so both
work with the new one, for the same Matrix ID; the old address finds nothing any more.
Externals are refused: their address is the one they were invited with (the module's record
of them keys on it), so a new address means a new invitation.
"""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from admin_console.actions import Refused, perform
from admin_console.externals import is_external
from admin_console.synapse_admin import SynapseClient, addresses, appliance, client, users
from admin_console.users.views import bp
from admin_console.validators import EmailAddress
from appliance.addresses.email_address import EmailAddress as Address
from appliance.addresses.email_address import parse_email
from appliance.addresses.identity import display_name_for, name_suffix


class AddressForm(FlaskForm):
    email = StringField(
        _l("New professional email address"),
        validators=[DataRequired(), Length(max=254), EmailAddress()],
    )


def renamed(display_name: str | None, old: Address | None, new: Address) -> str:
    """The display name with the new domain's tag: the chosen name part is kept when the name
    ends with the old address's tag, else the name derived from the new address."""
    if display_name and old is not None:
        suffix = f" {name_suffix(old)}"
        if display_name.endswith(suffix) and len(display_name) > len(suffix):
            return f"{display_name[: -len(suffix)]} {name_suffix(new)}"
    return display_name_for(new)


def change_address(synapse: SynapseClient, user_id: str, raw_address: str) -> str:
    """Bind the new address in place of the old one; the audit detail ("old -> new").
    Raises Refused with the reason, before changing anything, when it may not be done."""
    new = parse_email(raw_address)
    details = users.get_user(synapse, user_id)
    if details.user.deactivated:
        raise Refused(_("a deactivated account has no address to change"))
    if is_external(synapse, user_id):
        raise Refused(
            _(
                "an external's address is the one it was invited with: invite the new "
                "address into the rooms instead"
            )
        )
    if not appliance.email_domain_allowed(synapse, new.address):
        raise Refused(
            _("%(domain)s is not an allowed domain: add it first", domain=new.unicode_domain)
        )
    holder = addresses.holder_of(synapse, new.address)
    if holder == user_id:
        raise Refused(_("%(address)s is already this account's address", address=new.address))
    if holder is not None:
        raise Refused(_("%(address)s is the address of %(user)s", address=new.address, user=holder))
    old = parse_email(details.emails[0]) if details.emails else None
    addresses.replace_email(
        synapse,
        user_id,
        new.address,
        displayname=renamed(details.user.displayname, old, new),
        previous_displayname=details.user.displayname,
    )
    return f"{old.address if old else '-'} -> {new.address}"


@bp.route("/<path:user_id>/address", methods=["GET", "POST"])
def address(user_id: str):
    form = AddressForm()
    if form.validate_on_submit():
        done = perform(
            action="user.address",
            target=user_id,
            operation=lambda: change_address(client(), user_id, form.email.data),
            success=_("The address of %(user)s is changed.", user=user_id),
        )
        if done is not None:
            return redirect(url_for("users.detail", user_id=user_id))
    for errors in form.errors.values():
        flash(_("Not changed: %(reason)s", reason="; ".join(map(str, errors))), "error")
    details = users.get_user(client(), user_id)
    return render_template("users/address.html", form=form, details=details, user=details.user)
