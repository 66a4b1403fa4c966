# SPDX-License-Identifier: AGPL-3.0-or-later
"""Forms shared by every page (Flask-WTF adds the CSRF token to each)."""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, Length

from admin_console.policy import OPERATOR_USERNAME_MAX_LENGTH, PASSWORD_MAX_LENGTH


class LoginForm(FlaskForm):
    username = StringField(
        _l("Username"), validators=[DataRequired(), Length(max=OPERATOR_USERNAME_MAX_LENGTH)]
    )
    password = PasswordField(
        _l("Password"), validators=[DataRequired(), Length(max=PASSWORD_MAX_LENGTH)]
    )


class LogoutForm(FlaskForm):
    """Logging out changes state, so it is a POST with a CSRF token too."""


class ActionForm(FlaskForm):
    """A button that changes something: only the CSRF token."""


class ConfirmForm(FlaskForm):
    """A destructive action: sent first without `confirmed`, it shows a confirmation page;
    only the second POST, from that page's button, carries `confirmed=yes` and acts."""

    confirmed = HiddenField()

    @property
    def is_confirmed(self) -> bool:
        return self.validate_on_submit() and self.confirmed.data == "yes"
