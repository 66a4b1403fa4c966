# SPDX-License-Identifier: AGPL-3.0-or-later
"""Forms of the user pages."""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from admin_console.forms import ConfirmForm
from admin_console.policy import MATRIX_PASSWORD_MIN_LENGTH
from admin_console.validators import EmailAddress, strong_password


class DeactivateForm(ConfirmForm):
    erase = BooleanField(
        _l("Also erase: remove the profile and hide the user's messages from new members"),
        default=True,
    )


class ReactivateForm(FlaskForm):
    password = PasswordField(
        _l(
            "New password to give the user (at least %(count)d characters, upper and lower case, "
            "a digit)",
            count=MATRIX_PASSWORD_MIN_LENGTH,
        ),
        validators=strong_password(MATRIX_PASSWORD_MIN_LENGTH),
    )
    email = StringField(
        _l("Email address to bind again (deactivation removed it)"),
        validators=[Optional(), Length(max=254), EmailAddress()],
    )


class InviteForm(FlaskForm):
    emails = TextAreaField(
        _l("Professional email addresses, one per line"),
        validators=[DataRequired(), Length(max=20_000)],
    )
