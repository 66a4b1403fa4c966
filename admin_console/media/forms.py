# SPDX-License-Identifier: AGPL-3.0-or-later
"""Forms of the media page."""

from flask_babel import lazy_gettext as _l
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from admin_console.forms import ConfirmForm


class MediaForm(ConfirmForm):
    media = StringField(
        _l("Media (mxc://server/media_id)"), validators=[DataRequired(), Length(max=512)]
    )
