"""The allowed-domains page. Changes go to the module's endpoints and are live at once.

The list is searched and paged here, and only the shown page's accounts are counted (one Admin
API count per entry shown), so the counting costs the same with 20 entries or 100,000. The list
itself still comes whole, in one call, since the module's endpoint has no paging.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, render_template, request, url_for
from flask_babel import gettext as _

from admin_console import audit
from admin_console.actions import Confirmation, confirm_then_perform
from admin_console.auth import require_login
from admin_console.domains.counts import account_counts
from admin_console.domains.forms import AddDomainsForm
from admin_console.forms import ConfirmForm
from admin_console.pagination import offset_arg
from admin_console.synapse_admin import SynapseRefused, appliance, client
from appliance.domain_allowlist import InvalidDomainEntry, normalise_domain_entry

bp = Blueprint("domains", __name__, url_prefix="/domains")
bp.before_request(require_login)
PAGE_SIZE = 50


@dataclass(frozen=True)
class AddResult:
    raw: str
    entry: str | None
    ok: bool
    message: str


@dataclass(frozen=True)
class DomainPage:
    entries: list[appliance.DomainEntry]
    total: int  # entries matching the search
    offset: int
    next_offset: int | None


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


def domain_page(entries: list[appliance.DomainEntry], search: str, offset: int) -> DomainPage:
    """The entries containing search (all without one), PAGE_SIZE of them from offset."""
    needle = search.lower()
    matching = [e for e in entries if needle in e.entry] if needle else entries
    end = offset + PAGE_SIZE
    return DomainPage(
        matching[offset:end], len(matching), offset, end if end < len(matching) else None
    )


def _render(form: AddDomainsForm, results: list[AddResult]):
    search = request.args.get("q", "").strip()
    shown = domain_page(appliance.list_domains(client()), search, offset_arg())
    return render_template(
        "domains/list.html", page=shown, q=search, page_size=PAGE_SIZE,
        counts=account_counts(client(), [e.entry for e in shown.entries]),
        form=form, results=results, remove_form=ConfirmForm(),
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
            audit.record("domain.add", result.entry or raw, result.ok, result.message)
            results.append(result)
    return _render(form, results)


@bp.post("/remove/<path:entry>")
def remove(entry: str):
    return confirm_then_perform(
        ConfirmForm(),
        Confirmation(
            _("Stop allowing %(entry)s?", entry=entry),
            _("Nobody can register with an address of this domain any more. Existing accounts "
              "are kept."),
            _("Remove"),
        ),
        url_for("domains.page"),
        "domain.remove", entry, lambda: appliance.remove_domain(client(), entry),
        _("%(entry)s is no longer allowed.", entry=entry),
    )
