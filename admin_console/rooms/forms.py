# SPDX-License-Identifier: AGPL-3.0-or-later
"""Forms of the room pages."""

from flask_babel import lazy_gettext as _l
from wtforms import BooleanField

from admin_console.forms import ConfirmForm


class DeleteRoomForm(ConfirmForm):
    block = BooleanField(_l("Also block the room, so nobody can join it again"), default=True)
