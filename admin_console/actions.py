# SPDX-License-Identifier: AGPL-3.0-or-later
"""Carrying out an operator's action: do it, record it in the audit log, tell the operator.

Every state change of every page goes through `perform`, so none can skip the audit log.
A destructive action is confirmed first (`confirmed`): the first POST gets a page asking, and
only the POST from that page's button acts, so no script is needed. A switch with an undo
(grant/revoke, block/unblock...) goes through `toggle`: switching on asks first, switching off
needs only the CSRF token.

Their parameters are keyword-only: a call names the audit action, its target, the operation
and the messages, so none can be swapped with another string.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from flask import abort, flash, redirect, render_template
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from admin_console import audit
from admin_console.forms import ConfirmForm
from admin_console.synapse_admin import SynapseRefused, SynapseUnavailable

T = TypeVar("T")


class Refused(Exception):
    """The console itself refuses the action; str() is the reason shown to the operator."""


@dataclass(frozen=True)
class Confirmation:
    """What the confirmation page asks, what follows if the operator goes on, its button."""

    question: str
    consequence: str
    button: str


def perform(*, action: str, target: str, operation: Callable[[], T], success: str) -> T | None:
    """Run operation; audit and flash the outcome. Return its result, or None if it failed."""
    try:
        result = operation()
    except (SynapseRefused, SynapseUnavailable, Refused) as error:
        audit.record(action, target, ok=False, detail=str(error))
        flash(_("Failed: %(reason)s", reason=str(error)), "error")
        return None
    audit.record(action, target, ok=True, detail=result if isinstance(result, str) else "")
    flash(success, "success")
    return result


def confirmation_page(form: ConfirmForm, *, ask: Confirmation, back: str) -> str:
    """The page asking the operator to confirm; Cancel leads to back (a URL of this console)."""
    return render_template(
        "confirm.html",
        form=form,
        question=ask.question,
        consequence=ask.consequence,
        button=ask.button,
        back=back,
    )


def confirmed(form: ConfirmForm, *, ask: Confirmation, back: str) -> str | None:
    """None once the operator confirmed; else the confirmation page to send instead of acting."""
    return None if form.is_confirmed else confirmation_page(form, ask=ask, back=back)


def confirm_then_perform(
    form: ConfirmForm,
    *,
    ask: Confirmation,
    back: str,
    action: str,
    target: str,
    operation: Callable[[], object],
    success: str,
) -> str | Response:
    """A destructive action: ask first, then perform it and go back."""
    asking = confirmed(form, ask=ask, back=back)
    if asking is not None:
        return asking
    perform(action=action, target=target, operation=operation, success=success)
    return redirect(back)


def toggle(
    *,
    action: str,
    target: str,
    on: bool,
    switch: Callable[[bool], object],
    ask: Confirmation,
    success: str,
    back: str,
) -> str | Response:
    """Switch something on (after confirmation) or off (at once), then go back."""
    form = ConfirmForm()
    if on:
        return confirm_then_perform(
            form,
            ask=ask,
            back=back,
            action=action,
            target=target,
            operation=lambda: switch(True),
            success=success,
        )
    if not form.validate_on_submit():
        abort(400)
    perform(action=action, target=target, operation=lambda: switch(False), success=success)
    return redirect(back)
