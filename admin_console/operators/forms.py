"""Forms of the operators page."""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, Regexp

MIN_PASSWORD_LENGTH = 12


class AddOperatorForm(FlaskForm):
    username = StringField(
        _l("Username"),
        validators=[
            DataRequired(), Length(min=2, max=64),
            Regexp(r"^[a-z0-9._-]+$", message=_l("lower-case letters, digits, '.', '_' and '-' only")),
        ],
    )
    password = PasswordField(
        _l("Password (at least %(count)d characters)", count=MIN_PASSWORD_LENGTH),
        validators=[DataRequired(), Length(min=MIN_PASSWORD_LENGTH, max=256)],
    )
    confirm = PasswordField(
        _l("Password again"),
        validators=[DataRequired(), EqualTo("password", message=_l("the passwords differ"))],
    )
