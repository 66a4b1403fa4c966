# SPDX-License-Identifier: AGPL-3.0-or-later
"""One allowlist decision at 10, 1,000 and 100,000 entries, and against Synapse's regex list.

The module's decision (``decide``: strict parsing of the address, then one set look-up per
label of its domain) must cost the same whatever the size of the list.  Synapse's own
mechanism, ``allowed_local_3pids``, tries one regular expression per entry; at 1,000 entries
both run here through the callback Synapse awaits (the module's ``is_3pid_allowed`` against
``synapse.util.threepids.check_3pid_allowed``), on an address no entry admits (the common case
of a refusal, and the regex list's worst case) and on one admitted by the middle entry (an
average hit for a list scanned in order).
(Synapse passes each pattern as a string to ``re.match``, whose compiled-pattern cache holds
512 entries: past that size every decision recompiles every pattern.)

Every figure is measured in this run; the printed ratios are what matters.
Run: .venv/bin/python bench/bench_allowlist.py
"""

from __future__ import annotations

import random
import re
import sys
import time
import timeit
from collections.abc import Callable, Coroutine
from types import SimpleNamespace

from bench_result import Row, at_most, emit, no_goal
from synapse.handlers.auth import PasswordAuthProvider
from synapse.util.threepids import check_3pid_allowed

from appliance.addresses.domain_allowlist import DomainAllowlist
from appliance.synapse_module.accounts.registration import RegistrationPolicy, decide

SIZES = (10, 1_000, 100_000)
FLAT = 1.3  # growth from 10 to 100,000 entries still called flat (the console list's bound)
SERVER_NAME = "appliance.example"
MISS = "pierre.dupont@not-listed.example"
REPEATS = 15


def entries(count: int, seed: int = 1) -> list[str]:
    """Realistic entries: nine in ten exact domains, one in ten subdomain wildcards."""
    rng = random.Random(seed)
    made = []
    for index in range(count):
        domain = f"service{index}.{rng.choice(['ac', 'ars', 'dgfip', 'mairie'])}-{index % 211}.fr"
        made.append(f"*.{domain}" if index % 10 == 0 else domain)
    return made


def address_admitted_by(entry: str) -> str:
    return "pierre.dupont@" + (f"bureau.{entry[2:]}" if entry.startswith("*.") else entry)


def synapse_pattern(entry: str) -> dict:
    """The allowed_local_3pids rule an administrator would write for the same entry."""
    if entry.startswith("*."):
        return {"medium": "email", "pattern": rf"^[^@]+@(?:[^@.]+\.)+{re.escape(entry[2:])}$"}
    return {"medium": "email", "pattern": rf"^[^@]+@{re.escape(entry)}$"}


def run(coroutine: Coroutine) -> object:
    """Drive a coroutine that never suspends (both callbacks below complete at once)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("the coroutine waited on something")


def interleaved_best(
    functions: dict[str, Callable[[], object]], rounds: int = REPEATS
) -> dict[str, float]:
    """Best time of one call of each function (us), measured in turns so that a burst of load
    on the machine does not fall on one of them only."""
    timers = {name: timeit.Timer(function) for name, function in functions.items()}
    numbers = {name: timer.autorange()[0] for name, timer in timers.items()}
    best = dict.fromkeys(functions, float("inf"))
    for _ in range(rounds):
        for name, timer in timers.items():
            best[name] = min(best[name], timer.timeit(numbers[name]) / numbers[name] * 1e6)
    return best


def bench_sizes() -> Row:
    # The same addresses at every size (entries are generated in the same order): entry 0 is
    # a wildcard and entry 5 an exact domain in every list.
    addresses = {
        "miss": MISS,
        "exact hit": address_admitted_by(entries(SIZES[0])[5]),
        "wildcard hit": address_admitted_by(entries(SIZES[0])[0]),
    }
    lists = {}
    for size in SIZES:
        began = time.perf_counter()
        lists[size] = DomainAllowlist(entries(size))
        print(f"built the {size:,}-entry list in {time.perf_counter() - began:.2f} s")
        for kind, address in addresses.items():
            admitted = decide(address, lists[size], server_name=SERVER_NAME).allowed
            assert admitted == (kind != "miss"), (size, address)
    domain = addresses["exact hit"].split("@")[1]
    functions = {}
    for size, allowlist in lists.items():
        for kind, address in addresses.items():
            functions[(size, kind)] = lambda a=address, listed=allowlist: decide(
                a, listed, server_name=SERVER_NAME
            )
        functions[(size, "set look-up alone")] = lambda listed=allowlist: listed.matching_entry(
            domain
        )
    best = interleaved_best(functions)
    kinds = [*addresses, "set look-up alone"]
    print(f"\none decision (us): {'entries':>9} " + " ".join(f"{kind:>18}" for kind in kinds))
    for size in SIZES:
        print(f"{'':>20}{size:>9,} " + " ".join(f"{best[(size, kind)]:>18.2f}" for kind in kinds))
    ratios = ", ".join(
        f"{kind} {best[(SIZES[-1], kind)] / best[(SIZES[0], kind)]:.2f}x" for kind in kinds
    )
    print(f"flatness, {SIZES[-1]:,} vs {SIZES[0]} entries: {ratios}")
    growth = {kind: best[(SIZES[-1], kind)] / best[(SIZES[0], kind)] for kind in addresses}
    figure = ", ".join(f"{kind} {ratio:.2f}" for kind, ratio in growth.items())
    return at_most(
        f"one decision, {SIZES[-1]:,} / {SIZES[0]} entries (worst)",
        figure,
        max(growth.values()),
        FLAT,
    )


def bench_against_synapse(size: int = 1_000) -> list[Row]:
    listed = entries(size)
    allowlist = DomainAllowlist(listed)
    policy = RegistrationPolicy(SimpleNamespace(server_name=SERVER_NAME), lambda: allowlist)
    homeserver = SimpleNamespace(
        config=SimpleNamespace(
            registration=SimpleNamespace(allowed_local_3pids=[synapse_pattern(e) for e in listed])
        ),
        get_password_auth_provider=PasswordAuthProvider,  # no module callbacks: regexes only
    )
    rng = random.Random(7)
    hits = [address_admitted_by(rng.choice(listed)) for _ in range(50)]
    # A regex list is scanned in order: the middle entry costs what an average hit costs.
    middle = address_admitted_by(listed[size // 2])

    def module(address: str) -> bool:
        return run(policy.is_3pid_allowed("email", address, True))

    def synapse(address: str) -> bool:
        return run(check_3pid_allowed(homeserver, "email", address, registration=True))

    for address in [MISS, *hits]:
        assert module(address) == synapse(address) == (address != MISS), address
    functions = {}
    for label, address in (("miss", MISS), ("hit", middle)):
        functions[(label, "module")] = lambda a=address: module(a)
        functions[(label, "synapse")] = lambda a=address: synapse(a)
    best = interleaved_best(functions)
    print(f"\nagainst Synapse's allowed_local_3pids, {size:,} entries (us per decision):")
    rows = []
    for label in ("miss", "hit"):
        ours, theirs = best[(label, "module")], best[(label, "synapse")]
        print(
            f"  {label:<5} module {ours:10.2f}   synapse regexes {theirs:10.2f}   "
            f"ratio synapse/module = {theirs / ours:.1f}x"
        )
        rows.append(
            no_goal(
                f"Synapse's regexes / module, {size:,} entries, {label}",
                f"{theirs:.1f} us against {ours:.2f} us",
                theirs / ours,
            )
        )
    return rows


def main() -> int:
    print(f"Python {sys.version.split()[0]}; best of {REPEATS} repeats per figure\n")
    flatness = bench_sizes()
    emit("allowlist", [flatness, *bench_against_synapse()])
    return 0


if __name__ == "__main__":
    sys.exit(main())
