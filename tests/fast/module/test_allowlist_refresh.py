# SPDX-License-Identifier: AGPL-3.0-or-later
"""The allowlist each process decides with (accounts/domain_store.py), on Synapse's schema.

The contract under test (DomainStore's docstring): seeded once from the config, then the
database is the reference; every process refreshes from it; fail closed: until the list has
been read, or once it could not be confirmed for MAX_AGE_SECONDS, ``current()`` is None and
registration is refused; a failed refresh keeps the last good list only within that bound.
"""

from __future__ import annotations

from appliance.synapse_module.accounts.domain_store import (
    MAX_AGE_SECONDS,
    REFRESH_SECONDS,
    SEEDED_BY,
    DomainStore,
)

SEED = ("ac-paris.fr", "*.gouv.fr")


def started(api, clock, seed=SEED) -> DomainStore:
    store = DomainStore(api, seed, clock=clock)
    store.start()
    return store


def allowed(store: DomainStore, domain: str) -> bool:
    allowlist = store.current()
    assert allowlist is not None, "the list should be trusted here"
    return allowlist.matching_entry(domain) is not None


def test_the_first_start_creates_and_seeds_the_list_and_decides_with_it(api, clock, database):
    store = started(api, clock)

    assert allowed(store, "ac-paris.fr") and allowed(store, "dgfip.gouv.fr")
    assert not allowed(store, "gmail.com")
    assert sorted(database.rows("SELECT entry, added_by FROM appliance_allowed_domains")) == [
        ("*.gouv.fr", SEEDED_BY),
        ("ac-paris.fr", SEEDED_BY),
    ]


def test_a_later_start_keeps_the_database_list_not_the_config(api, clock, run):
    first = started(api, clock)
    assert run(first.remove("ac-paris.fr"))

    again = started(api, clock, seed=("ac-paris.fr", "evil.example"))

    assert not allowed(again, "ac-paris.fr") and not allowed(again, "evil.example")
    assert allowed(again, "dgfip.gouv.fr")


def test_a_worker_refuses_until_the_main_process_has_created_the_list(
    api, worker_api, clock, database, run
):
    worker = started(worker_api, clock)
    assert worker.current() is None  # no table yet: nothing to decide with, so refuse
    assert not database.rows("SELECT name FROM sqlite_master WHERE name LIKE 'appliance_%'")

    started(api, clock)
    run(worker.refresh())

    assert allowed(worker, "ac-paris.fr")


def test_a_failed_refresh_keeps_the_last_good_list_only_until_it_is_too_old(
    api, clock, database, run
):
    store = started(api, clock)
    database.outage = RuntimeError("the database went away")

    clock.now += REFRESH_SECONDS
    run(store.refresh())
    assert allowed(store, "ac-paris.fr")  # confirmed REFRESH_SECONDS ago: still trusted

    clock.now += MAX_AGE_SECONDS
    run(store.refresh())
    assert store.current() is None  # unconfirmed for too long: registration is refused

    database.outage = None
    run(store.refresh())
    assert allowed(store, "ac-paris.fr")


def test_an_unconfirmed_list_is_refused_even_without_a_refresh_attempt(api, clock):
    # The loop may itself be stuck: age alone makes the list untrusted.
    store = started(api, clock)
    clock.now += MAX_AGE_SECONDS + 0.001
    assert store.current() is None


def test_a_domain_removed_by_another_process_stops_here_at_the_next_refresh(
    api, worker_api, clock, run
):
    main, worker = started(api, clock), started(worker_api, clock)
    assert allowed(worker, "ac-paris.fr")

    assert run(main.remove("ac-paris.fr")) is True
    assert not allowed(main, "ac-paris.fr")  # the writer applies it at once

    run(worker.refresh())
    assert not allowed(worker, "ac-paris.fr") and allowed(worker, "dgfip.gouv.fr")


def test_adding_and_removing_report_whether_anything_changed(api, clock, run, database):
    store = started(api, clock)

    assert run(store.add("ac-lille.fr", added_by="@admin:appliance.test")) is True
    assert run(store.add("ac-lille.fr", added_by="@admin:appliance.test")) is False
    assert run(store.remove("nowhere.example")) is False
    assert allowed(store, "ac-lille.fr")
    generation = database.rows("SELECT generation FROM appliance_allowlist_state")
    assert generation == [(2,)]  # the seed, then one real change
