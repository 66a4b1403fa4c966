# SPDX-License-Identifier: AGPL-3.0-or-later
"""French and English (Flask-Babel): the operator picks; until then the browser's preference.

Messages are in `translations/<lang>/LC_MESSAGES/messages.po`. After changing texts, from the
repository root (tests check that the .mo matches the .po and that nothing is untranslated):

    .venv/bin/pybabel extract -F admin_console/babel.cfg -k _l -k lazy_gettext \
        -o admin_console/translations/messages.pot admin_console
    .venv/bin/pybabel update -i admin_console/translations/messages.pot \
        -d admin_console/translations
    (translate the new msgstr entries)
    .venv/bin/pybabel compile -d admin_console/translations
"""

from __future__ import annotations

from flask import Blueprint, Flask, redirect, request, session
from flask_babel import Babel

from admin_console.auth import safe_next

LANGUAGES = {"en": "English", "fr": "Français"}
DEFAULT_LANGUAGE = "en"

bp = Blueprint("i18n", __name__)


def current_language() -> str:
    chosen = session.get("lang")
    if chosen in LANGUAGES:
        return chosen
    return request.accept_languages.best_match(LANGUAGES, DEFAULT_LANGUAGE)


@bp.post("/language")
def choose():
    # A POST with the CSRF token like every change, even one that only touches the session.
    language = request.form.get("lang")
    if language in LANGUAGES:
        session["lang"] = language
    return redirect(safe_next(request.form.get("next")))


def init_app(app: Flask) -> None:
    Babel(app, locale_selector=current_language)
    app.register_blueprint(bp)

    @app.context_processor
    def _languages():
        return {"languages": LANGUAGES, "current_language": current_language()}
