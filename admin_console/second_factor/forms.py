# SPDX-License-Identifier: AGPL-3.0-or-later
"""Forms of the second factor: a code from the authenticator app, or a recovery code."""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Length


class CodeForm(FlaskForm):
    # Six digits from the app, or a recovery code (xxxxx-xxxxx); checked by the store.
    code = StringField(
        _l("Code from your authenticator app, or a recovery code"),
        validators=[DataRequired(), Length(max=32)],
    )


class StartForm(FlaskForm):
    """Only the CSRF token: starting an enrolment writes a new secret."""
