# SPDX-License-Identifier: AGPL-3.0-or-later
"""Forms of the domains page."""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import TextAreaField
from wtforms.validators import DataRequired, Length


class AddDomainsForm(FlaskForm):
    entries = TextAreaField(
        _l("Domains to allow, one per line (ac-paris.fr, or *.gouv.fr for every subdomain)"),
        validators=[DataRequired(), Length(max=100_000)],
    )
