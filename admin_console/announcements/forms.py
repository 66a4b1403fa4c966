# SPDX-License-Identifier: AGPL-3.0-or-later
"""The announcement form: the audience, and the text in both languages (the operator writes
both; every recipient gets both, French first)."""

from flask_babel import lazy_gettext as _l
from wtforms import RadioField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from admin_console.forms import ConfirmForm

# Matrix events are at most 64 KiB; both texts, escaped twice (plain and HTML), fit well.
MAX_TEXT = 4000


class AnnouncementForm(ConfirmForm):
    """Sending to every agent asks for a confirmation first."""

    audience = RadioField(
        _l("To"),
        choices=[
            ("all", _l("Every agent")),
            ("domain", _l("The agents of one domain")),
            ("user", _l("One user")),
        ],
        default="all",
        validators=[DataRequired()],
    )
    domain = StringField(_l("Domain (e.g. ac-paris.fr)"), validators=[Optional(), Length(max=253)])
    user = StringField(_l("User (@name:server)"), validators=[Optional(), Length(max=255)])
    text_fr = TextAreaField(_l("Text in French"), validators=[DataRequired(), Length(max=MAX_TEXT)])
    text_en = TextAreaField(
        _l("Text in English"), validators=[DataRequired(), Length(max=MAX_TEXT)]
    )
