# SPDX-License-Identifier: AGPL-3.0-or-later
"""Forms of account validity (renew is a button: admin_console.forms.ActionForm)."""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import IntegerField
from wtforms.validators import DataRequired, NumberRange

MAX_EXTEND_DAYS = 3650  # the module's own bound (accounts/validity_resources.py)


class ExtendForm(FlaskForm):
    days = IntegerField(
        _l("Days to add"),
        default=30,
        validators=[DataRequired(), NumberRange(min=1, max=MAX_EXTEND_DAYS)],
    )


class ExpiringForm(FlaskForm):
    """The expiring-soon list's window (a GET form: no CSRF token needed)."""

    class Meta:
        csrf = False

    days = IntegerField(
        _l("Expiring within (days)"), default=30, validators=[NumberRange(min=1, max=3650)]
    )
