# SPDX-License-Identifier: AGPL-3.0-or-later
"""The registration round trip with the appliance module, against the same Synapse without it.

Two Synapses are started side by side from the same rendered configuration (each with its own
SMTP sink); one has its ``modules:`` section removed.  Each round trip is what a client does:
request a token, read the link from the sink, follow it, then ``/register`` (two calls).  The
two servers take turns, so that load on the machine hits both alike; the ratio of the medians
is the module's cost.
Run: .venv/bin/python bench/bench_registration.py [round trips per server, default 20]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from bench_result import emit, no_goal  # noqa: E402
from harness import evaluation_settings  # noqa: E402  (the test harness's free-port settings)
from matrix_helpers import MatrixClient, SideSynapse  # noqa: E402

from appliance.config.layout import Layout  # noqa: E402

DOMAIN = "ac-paris.fr"


def without_module(config: dict) -> None:
    del config["modules"]


def start(state_dir: Path, edit_config=None) -> SideSynapse:
    settings = evaluation_settings(state_dir, registration={"allowed_domains": [DOMAIN]})
    return SideSynapse(settings, Layout.from_settings(settings, state_dir), edit_config=edit_config)


def round_trip(client: MatrixClient, address: str) -> float:
    began = time.perf_counter()
    response = client.register(client.verify("register", address), username=address.split("@")[0])
    elapsed = time.perf_counter() - began
    assert response.status_code == 200, response.text
    return elapsed


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    with tempfile.TemporaryDirectory() as temp:
        with (
            start(Path(temp, "with")) as with_module,
            start(Path(temp, "without"), without_module) as bare,
        ):
            clients = {"with module": with_module.client(), "without module": bare.client()}
            timings: dict[str, list[float]] = {name: [] for name in clients}
            round_trip(clients["with module"], f"warm.up@{DOMAIN}")
            round_trip(clients["without module"], f"warm.up@{DOMAIN}")
            for index in range(count):
                for name, client in clients.items():
                    timings[name].append(round_trip(client, f"agent.{index}@{DOMAIN}"))
    print(f"registration round trip, median of {count} per server (ms):")
    medians = {name: statistics.median(values) * 1000 for name, values in timings.items()}
    for name, median in medians.items():
        spread = statistics.quantiles([v * 1000 for v in timings[name]], n=4)
        print(f"  {name:<15} {median:8.1f}   (quartiles {spread[0]:.1f} - {spread[2]:.1f})")
    ratio = medians["with module"] / medians["without module"]
    print(f"ratio with/without module = {ratio:.2f}x")
    figure = f"{medians['with module']:.0f} ms against {medians['without module']:.0f} ms"
    emit(
        "registration",
        [no_goal("email registration round trip, with / without module", figure, ratio)],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
