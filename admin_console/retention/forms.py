# SPDX-License-Identifier: AGPL-3.0-or-later
"""The form of the retention page's actions."""

from flask_babel import lazy_gettext as _l
from wtforms import IntegerField
from wtforms.validators import InputRequired, NumberRange

from admin_console.forms import ConfirmForm

# Never less than a day: a file in use right now must not go.
MIN_DAYS, MAX_DAYS = 1, 3650


class PurgeForm(ConfirmForm):
    days = IntegerField(
        _l("Older than (days)"),
        default=30,
        validators=[InputRequired(), NumberRange(min=MIN_DAYS, max=MAX_DAYS)],
    )
