# SPDX-License-Identifier: AGPL-3.0-or-later
"""Forms of the operators page and of an operator's own password."""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import Field, PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, Regexp, ValidationError

from admin_console.policy import (
    OPERATOR_PASSWORD_MIN_LENGTH,
    OPERATOR_USERNAME_MAX_LENGTH,
    OPERATOR_USERNAME_MIN_LENGTH,
    PASSWORD_MAX_LENGTH,
)
from admin_console.validators import EmailAddress, strong_password

PASSWORD_RULE = _l(
    "at least %(count)d characters, upper and lower case, a digit",
    count=OPERATOR_PASSWORD_MIN_LENGTH,
)


def _confirmation() -> PasswordField:
    return PasswordField(
        _l("Password again"),
        validators=[DataRequired(), EqualTo("password", message=_l("the passwords differ"))],
    )


class AddOperatorForm(FlaskForm):
    username = StringField(
        _l("Username"),
        validators=[
            DataRequired(),
            Length(min=OPERATOR_USERNAME_MIN_LENGTH, max=OPERATOR_USERNAME_MAX_LENGTH),
            Regexp(
                r"^[a-z0-9._-]+$", message=_l("lower-case letters, digits, '.', '_' and '-' only")
            ),
        ],
    )
    password = PasswordField(
        _l("Password (%(rule)s)", rule=PASSWORD_RULE),
        validators=strong_password(OPERATOR_PASSWORD_MIN_LENGTH),
    )
    confirm = _confirmation()
    role = SelectField(_l("Role"), choices=[], default="administrator")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.role.choices = role_choices()


class RoleForm(FlaskForm):
    role = SelectField(_l("Role"), choices=[])

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.role.choices = role_choices()


def role_choices() -> list[tuple[str, str]]:
    return [
        ("administrator", str(_l("Administrator: sees and changes everything"))),
        ("auditor", str(_l("Auditor: sees everything, changes nothing"))),
    ]


class ChangePasswordForm(FlaskForm):
    current = PasswordField(
        _l("Current password"), validators=[DataRequired(), Length(max=PASSWORD_MAX_LENGTH)]
    )
    password = PasswordField(
        _l("New password (%(rule)s)", rule=PASSWORD_RULE),
        validators=strong_password(OPERATOR_PASSWORD_MIN_LENGTH),
    )
    confirm = _confirmation()

    def validate_password(self, field: Field) -> None:
        if field.data == self.current.data:
            raise ValidationError(_l("the new password must differ from the current one"))


class AlertsForm(FlaskForm):
    """The logged-in operator's own choice: alert mail to this address, or none (empty)."""

    email = StringField(
        _l("Mail me when a health check turns red, and when it recovers, at"),
        validators=[Length(max=254), EmailAddress()],
    )
