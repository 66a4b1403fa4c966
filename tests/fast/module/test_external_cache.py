# SPDX-License-Identifier: AGPL-3.0-or-later
"""Externals and agents across processes (module/externals/policy.py): a worker never keeps an
account as an agent while another process may still be recording it as an external."""

from __future__ import annotations

from appliance.synapse_module.externals.policy import AGENT_CACHE_AFTER_MS, ExternalDirectory
from appliance.synapse_module.externals.store import ExternalStore

SERVER = "appliance.test"
JEAN = f"@jean-gmail.com:{SERVER}"
ANNE = f"@anne-ac-paris.fr:{SERVER}"


def test_an_account_registered_as_external_on_another_process_is_external_on_this_one(
    run, api, worker_api, directory
):
    worker = ExternalDirectory(worker_api, ExternalStore(worker_api))
    worker_api.users.add(JEAN)
    # The worker asks between the account's creation and its record, made by the main process.
    assert run(worker.is_external(JEAN)) is False

    run(directory.record(JEAN, "jean@gmail.com"))

    assert run(worker.is_external(JEAN)) is True


def test_an_agent_known_for_a_while_is_remembered(run, api, worker_api, directory, clock):
    worker = ExternalDirectory(worker_api, ExternalStore(worker_api))
    worker_api.users.add(ANNE)
    assert run(worker.is_external(ANNE)) is False
    clock.now += AGENT_CACHE_AFTER_MS / 1000
    assert run(worker.is_external(ANNE)) is False  # now remembered as an agent

    # A record that cannot happen for a registered agent shows the answer came from memory.
    run(directory.record(ANNE, "anne@ac-paris.fr"))

    assert run(worker.is_external(ANNE)) is False
