# SPDX-License-Identifier: AGPL-3.0-or-later
"""What the media benchmarks share: throwaway services on free loopback ports in a temp dir,
started by the same code as `make up` (the tests' SideServices), optionally with an edited
homeserver.yaml."""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from harness import evaluation_settings  # noqa: E402  (free ports, temp state)
from matrix_helpers import SideServices  # noqa: E402
from matrix_media_helpers import User, register_user  # noqa: E402

from appliance.config.layout import Layout  # noqa: E402
from appliance.evaluation.lifecycle import EvaluationAppliance  # noqa: E402


class Services(SideServices):
    """The named services of an evaluation appliance under `directory`, running inside the
    block."""

    def __init__(
        self,
        directory: Path,
        names: Sequence[str],
        edit_synapse_config: Callable[[dict], None] | None = None,
    ):
        settings = evaluation_settings(directory)
        self.appliance = EvaluationAppliance(settings, Layout.from_settings(settings, directory))
        specs = [spec for spec in self.appliance.specs() if spec.name in names]
        super().__init__(settings, self.appliance.layout, specs, edit_config=edit_synapse_config)

    @property
    def synapse_url(self) -> str:
        return self.settings.synapse.listen.url

    @property
    def scanner_url(self) -> str:
        return self.settings.content_scanner.listen.url

    def new_user(self) -> User:
        secret = self.layout.secret("registration_shared_secret").read_text().strip()
        return register_user(self.synapse_url, secret, "bench")


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)
