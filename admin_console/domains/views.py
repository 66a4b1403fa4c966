# SPDX-License-Identifier: AGPL-3.0-or-later
"""The allowed-domains page. Changes go to the module's endpoints and are live at once.

The module searches and pages the list, and counts the accounts of the shown page's entries
only: a page costs the same with 20 entries or 100,000.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, render_template, request, url_for
from flask_babel import gettext as _

from admin_console import audit
from admin_console.actions import Confirmation, confirm_then_perform
from admin_console.auth import require_login
from admin_console.domains.forms import AddDomainsForm
from admin_console.forms import ConfirmForm
from admin_console.pagination import offset_arg
from admin_console.synapse_admin import SynapseRefused, appliance, client
from appliance.addresses.domain_allowlist import InvalidDomainEntry, normalise_domain_entry

bp = Blueprint("domains", __name__, url_prefix="/domains")
bp.before_request(require_login)
PAGE_SIZE = 50


@dataclass(frozen=True)
class AddResult:
    raw: str
    entry: str | None
    ok: bool
    message: str


def _add_one(raw: str) -> AddResult:
    # Checked here first so a typo gets the reason without a round trip; Synapse checks again.
    try:
        entry = normalise_domain_entry(raw)
    except InvalidDomainEntry as error:
        return AddResult(raw, None, False, str(error))
    try:
        entry, created = appliance.add_domain(client(), entry)
    except SynapseRefused as error:
        return AddResult(raw, entry, False, error.message)
    return AddResult(raw, entry, True, _("added") if created else _("already allowed"))


def _render(form: AddDomainsForm, results: list[AddResult]):
    search = request.args.get("q", "").strip()
    shown = appliance.list_domains(client(), search.lower(), offset_arg(), PAGE_SIZE)
    return render_template(
        "domains/list.html",
        page=shown,
        q=search,
        page_size=PAGE_SIZE,
        form=form,
        results=results,
        remove_form=ConfirmForm(),
    )


@bp.get("/")
def page():
    return _render(AddDomainsForm(), [])


@bp.post("/")
def add():
    form = AddDomainsForm()
    results: list[AddResult] = []
    if form.validate_on_submit():
        lines = dict.fromkeys(line.strip() for line in form.entries.data.splitlines())
        for raw in filter(None, lines):
            result = _add_one(raw)
            audit.record("domain.add", result.entry or raw, ok=result.ok, detail=result.message)
            results.append(result)
    return _render(form, results)


@bp.post("/remove/<path:entry>")
def remove(entry: str):
    return confirm_then_perform(
        ConfirmForm(),
        ask=Confirmation(
            _("Stop allowing %(entry)s?", entry=entry),
            _(
                "Nobody can register with an address of this domain any more. Existing accounts "
                "are kept."
            ),
            _("Remove"),
        ),
        back=url_for("domains.page"),
        action="domain.remove",
        target=entry,
        operation=lambda: appliance.remove_domain(client(), entry),
        success=_("%(entry)s is no longer allowed.", entry=entry),
    )
