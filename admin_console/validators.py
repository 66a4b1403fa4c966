# SPDX-License-Identifier: AGPL-3.0-or-later
"""Form validators shared by several pages: password strength and email addresses."""

from __future__ import annotations

import re

from flask_babel import lazy_gettext as _l
from wtforms import Field, Form
from wtforms.validators import DataRequired, Length, ValidationError

from admin_console.policy import PASSWORD_MAX_LENGTH
from appliance.addresses.email_address import InvalidEmailAddress, parse_email

# Synapse's own character classes (synapse/handlers/password_policy.py): ASCII only.
_CLASSES = (
    (re.compile("[0-9]"), _l("a digit")),
    (re.compile("[a-z]"), _l("a lower-case letter")),
    (re.compile("[A-Z]"), _l("an upper-case letter")),
)


class MixedCharacters:
    """At least one digit, one lower-case and one upper-case letter, as Synapse counts them."""

    def __call__(self, form: Form, field: Field) -> None:
        missing = [str(name) for pattern, name in _CLASSES if not pattern.search(field.data or "")]
        if missing:
            raise ValidationError(_l("the password lacks %(what)s", what=", ".join(missing)))


def strong_password(min_length: int) -> list:
    """The validators of a new password: its length, then its character classes."""
    return [DataRequired(), Length(min=min_length, max=PASSWORD_MAX_LENGTH), MixedCharacters()]


class EmailAddress:
    """An address that appliance.addresses.email_address.parse_email accepts (the registration's
    own rules)."""

    def __call__(self, form: Form, field: Field) -> None:
        if not field.data:
            return
        try:
            parse_email(field.data)
        except InvalidEmailAddress as error:
            raise ValidationError(str(error)) from None
