"""What the media benchmarks share: throwaway services on free loopback ports in a temp dir,
started by the same code as `make up`, optionally with an edited homeserver.yaml."""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from harness import evaluation_settings  # noqa: E402  (free ports, temp state)
from matrix_media_helpers import User, register_user  # noqa: E402

from appliance.evaluation import EvaluationAppliance  # noqa: E402
from appliance.layout import Layout  # noqa: E402
from appliance.render import render_all, write_all  # noqa: E402
from appliance.secrets_store import ensure_secrets  # noqa: E402
from appliance.supervisor import ServiceSpec, start, stop, tail, wait_until_ready  # noqa: E402


class Services:
    """Some of an evaluation appliance's services, running until stop()."""

    def __init__(
        self,
        directory: Path,
        names: Sequence[str],
        edit_synapse_config: Callable[[dict], None] | None = None,
    ):
        settings = evaluation_settings(directory)
        self.appliance = EvaluationAppliance(settings, Layout.from_settings(settings, directory))
        self._names = names
        self._edit = edit_synapse_config
        self._running: list[ServiceSpec] = []

    def __enter__(self) -> Services:
        layout = self.appliance.layout
        ensure_secrets(layout)
        write_all(render_all(self.appliance.settings, layout))
        if self._edit is not None:
            config = yaml.safe_load(layout.homeserver_config.read_text())
            self._edit(config)
            layout.homeserver_config.write_text(yaml.safe_dump(config))
        try:
            for spec in self.appliance.specs():
                if spec.name in self._names:
                    self._start(spec)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        for spec in reversed(self._running):
            stop(spec)

    def _start(self, spec: ServiceSpec) -> None:
        process = start(spec)
        self._running.append(spec)
        reason = wait_until_ready(spec, process)
        if reason is not None:
            raise SystemExit(f"{spec.name} {reason}\n{tail(spec.logfile)}")

    @property
    def synapse_url(self) -> str:
        return self.appliance.settings.synapse.listen.url

    @property
    def scanner_url(self) -> str:
        return self.appliance.settings.content_scanner.listen.url

    def new_user(self) -> User:
        secret = self.appliance.layout.secret("registration_shared_secret").read_text().strip()
        return register_user(self.synapse_url, secret, "bench")


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)
