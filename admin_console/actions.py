"""Carrying out an operator's action: do it, record it in the audit log, tell the operator.

Every state change of every page goes through `perform`, so none can skip the audit log.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flask import abort, flash, render_template
from flask_babel import gettext as _

from admin_console import audit
from admin_console.forms import ConfirmForm
from admin_console.synapse_admin import SynapseRefused, SynapseUnavailable

T = TypeVar("T")


class Refused(Exception):
    """The console itself refuses the action; str() is the reason shown to the operator."""


def perform(action: str, target: str, operation: Callable[[], T], success: str) -> T | None:
    """Run operation; audit and flash the outcome. Return its result, or None if it failed."""
    try:
        result = operation()
    except (SynapseRefused, SynapseUnavailable, Refused) as error:
        audit.record(action, target, False, str(error))
        flash(_("Failed: %(reason)s", reason=str(error)), "error")
        return None
    audit.record(action, target, True, result if isinstance(result, str) else "")
    flash(success, "success")
    return result


def confirmation_page(form: ConfirmForm, question: str, consequence: str, button: str):
    """The page asking the operator to confirm a destructive action (no script needed)."""
    return render_template(
        "confirm.html", form=form, question=question, consequence=consequence, button=button
    )


def ask_first(form: ConfirmForm, ask: bool, question: str, consequence: str, button: str):
    """None when the action may go ahead; else the response to send instead of acting.

    With ask, the first POST gets the confirmation page; without (undoing something harmless),
    a valid CSRF token is enough.
    """
    if ask:
        return None if form.is_confirmed else confirmation_page(form, question, consequence, button)
    if not form.validate_on_submit():
        abort(400)
    return None
