# SPDX-License-Identifier: AGPL-3.0-or-later
"""scan_encrypted: our content scanner against matrix-content-scanner 1.0.8, same run.

Both scanners run side by side against the same Synapse and the same clamd (EICAR signatures):
1.0.8 runs `clamdscan --stream` on each file (its documented set-up), ours streams the
decrypted bytes to clamd itself. Synapse runs with authenticated media off, since 1.0.8 only
knows the unauthenticated media endpoints (ours sends the user's token either way).

Cold, per size: each scanner gets its own freshly generated encrypted attachments of that
size (clamd keeps its own cache of clean files by hash, which would favour whichever scanner
came second on identical bytes), asked CONCURRENCY at a time; sizes alternate which scanner
goes first. Cached: one known attachment asked again CACHED_REQUESTS times, one at a time.
Goal: our throughput >= 2x 1.0.8's; our cached verdict under 5 ms.

For scale, each size also times clamd alone scanning the same number of fresh plaintexts of
that size, CONCURRENCY at a time (the least any scanner must wait for), and prints the best
ratio any scanner on this clamd could reach: 1.0.8's time / clamd's time.

    .venv/bin/python bench/bench_content_scanner.py

1.0.8 is installed, the first time, in its own venv (var/bench/mcs-1.0.8, or $MCS_VENV).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import requests  # noqa: E402
import yaml  # noqa: E402
from bench_result import Row, at_least, cannot_run, emit  # noqa: E402
from harness import free_port  # noqa: E402
from matrix_media_helpers import EICAR, MEDIA_PROXY, User, upload_encrypted  # noqa: E402
from media_bench_support import Services, median, percentile  # noqa: E402

from appliance.antivirus.clamd import ClamdClient  # noqa: E402
from appliance.evaluation.supervisor import (  # noqa: E402
    ServiceSpec,
    start,
    stop,
    tail,
    wait_until_ready,
)

ROOT = Path(__file__).resolve().parent.parent
MCS_VENV = Path(os.environ.get("MCS_VENV", ROOT / "var" / "bench" / "mcs-1.0.8"))
MCS_REQUIREMENTS = ["matrix-content-scanner==1.0.8", "base58", "python-magic<0.5"]
SIZES = [64 << 10, 512 << 10, 2 << 20, 5 << 20]  # voice notes, images, photos, documents
FILES_PER_SIZE = 12
CONCURRENCY = 4
CACHED_REQUESTS = 200
THROUGHPUT_GOAL = 2.0  # ours / 1.0.8, files per second
CACHED_GOAL_MS = 5.0
CLAMDSCAN_WRONG = "clamdscan answered {answer} (expected {expected}) on the {name} file"
INSTALL_CLAMDSCAN = (
    "install Debian's clamdscan, the clamd client matrix-content-scanner 1.0.8 calls "
    "(`make bench` installs it; or as root: apt-get install clamdscan)"
)


@dataclass
class Results:
    latencies: list[float] = field(default_factory=list)  # cold, seconds
    wall: float = 0.0  # seconds spent on the cold batches

    @property
    def files_per_second(self) -> float:
        return len(self.latencies) / self.wall


def ensure_mcs_venv() -> Path:
    """1.0.8's own venv, installed on first use (or again, if a first install broke off)."""
    python = MCS_VENV / "bin" / "python"
    if _mcs_imports(python):
        return python
    print(f"installing matrix-content-scanner 1.0.8 in {MCS_VENV} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(MCS_VENV)], check=True)
    installed = subprocess.run([str(python), "-m", "pip", "install", "-q", *MCS_REQUIREMENTS])
    if installed.returncode != 0 or not _mcs_imports(python):
        cannot_run(
            f"matrix-content-scanner 1.0.8 could not be installed in {MCS_VENV} "
            f"(pip install {' '.join(MCS_REQUIREMENTS)}; python-magic needs Debian's libmagic1)"
        )
    return python


def _mcs_imports(python: Path) -> bool:
    if not python.exists():
        return False
    probe = [str(python), "-c", "import magic, matrix_content_scanner.mcs"]
    return subprocess.run(probe, capture_output=True).returncode == 0


def clamdscan_script(services: Services, directory: Path) -> Path:
    """1.0.8's documented scan script (`clamdscan --stream`) on our clamd, checked before use:
    clamdscan must call a clean file clean (exit 0) and the EICAR file infected (exit 1);
    1.0.8 takes any other exit status for a virus, which would make every file infected."""
    script = directory / "scan.sh"
    script.write_text(
        "#!/bin/sh\nexec clamdscan --config-file="
        f'{services.appliance.layout.clamd_config} --stream --no-summary --quiet "$1"\n'
    )
    script.chmod(0o755)
    for name, content, expected in (("clean", os.urandom(4096), 0), ("EICAR", EICAR, 1)):
        sample = directory / f"{name}.bin"
        sample.write_bytes(content)
        answer = subprocess.run([str(script), str(sample)], capture_output=True, text=True)
        if answer.returncode != expected:
            said = (answer.stdout + answer.stderr).strip() or "no output"
            wrong = CLAMDSCAN_WRONG.format(answer=answer.returncode, expected=expected, name=name)
            cannot_run(f"{wrong}: {said}")
    return script


def reference_scanner(services: Services, directory: Path) -> tuple[ServiceSpec, str]:
    """matrix-content-scanner 1.0.8 on a free port, scanning with clamdscan on our clamd."""
    port = free_port()
    script = clamdscan_script(services, directory)
    (directory / "tmp").mkdir()
    config = {
        "web": {"host": "127.0.0.1", "port": port},
        "scan": {"script": str(script), "temp_directory": str(directory / "tmp")},
        "download": {"base_homeserver_url": services.synapse_url},
        "crypto": {"pickle_path": str(directory / "pickle"), "pickle_key": "bench-only"},
        "result_cache": {"max_size": 4096},
    }
    (directory / "config.yaml").write_text(yaml.safe_dump(config))
    url = f"http://127.0.0.1:{port}"
    spec = ServiceSpec(
        name="mcs-1.0.8",
        argv=[str(ensure_mcs_venv()), "-m", "matrix_content_scanner.mcs", "-c", "config.yaml"],
        pidfile=directory / "mcs.pid",
        logfile=directory / "mcs.log",
        probe=lambda: _answers(f"{url}{MEDIA_PROXY}/public_key"),
        cwd=directory,
        start_timeout=60,
    )
    reason = wait_until_ready(spec, start(spec))
    if reason is not None:
        raise SystemExit(f"matrix-content-scanner 1.0.8 {reason}\n{tail(spec.logfile)}")
    return spec, url


def _answers(url: str) -> str | None:
    try:
        return None if requests.get(url, timeout=2).status_code == 200 else "not yet"
    except requests.RequestException as error:
        return str(error)


def check_verdicts(services: Services, scanners: dict[str, str]) -> None:
    """Before timing: each scanner calls a fresh clean attachment clean and an EICAR one
    infected, so that no ratio is ever computed from a scanner that answers wrongly."""
    user = services.new_user()
    for name, url in scanners.items():
        for label, plaintext, clean in (("clean", os.urandom(4096), True), ("EICAR", EICAR, False)):
            file = upload_encrypted(services.synapse_url, user, plaintext)
            response = requests.post(
                f"{url}{MEDIA_PROXY}/scan_encrypted",
                json={"file": file},
                headers=user.headers,
                timeout=120,
            )
            if verdict(response) is not clean:
                cannot_run(
                    f"{name} answered {response.status_code} {response.text.strip()} on a "
                    f"{label} attachment (expected clean: {clean}); see its log"
                )


def verdict(response: requests.Response) -> bool | None:
    """True for clean, False for infected (1.0.8 answers 200 with clean false, ours 403
    MCS_MEDIA_NOT_CLEAN), None for anything else."""
    try:
        body = response.json()
    except ValueError:
        return None
    if response.status_code == 200 and isinstance(body.get("clean"), bool):
        return body["clean"]
    if response.status_code == 403 and body.get("reason") == "MCS_MEDIA_NOT_CLEAN":
        return False
    return None


def scan_encrypted(session: requests.Session, url: str, user: User, file: dict) -> float:
    began = time.perf_counter()
    response = session.post(
        f"{url}{MEDIA_PROXY}/scan_encrypted", json={"file": file}, headers=user.headers, timeout=120
    )
    elapsed = time.perf_counter() - began
    if response.status_code != 200 or response.json().get("clean") is not True:
        raise SystemExit(f"{url} did not answer clean: {response.status_code} {response.text}")
    return elapsed


def cold_batch(url: str, user: User, synapse_url: str, size: int, results: Results) -> dict:
    """FILES_PER_SIZE fresh attachments of `size` bytes, CONCURRENCY at a time."""
    files = [upload_encrypted(synapse_url, user, os.urandom(size)) for _ in range(FILES_PER_SIZE)]
    with requests.Session() as session, ThreadPoolExecutor(CONCURRENCY) as pool:
        began = time.perf_counter()
        results.latencies += pool.map(lambda file: scan_encrypted(session, url, user, file), files)
        results.wall += time.perf_counter() - began
    return files[0]


def clamd_batch(clamd: ClamdClient, size: int) -> float:
    """Seconds clamd alone takes for FILES_PER_SIZE fresh plaintexts, CONCURRENCY at a time."""
    plaintexts = [os.urandom(size) for _ in range(FILES_PER_SIZE)]
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        began = time.perf_counter()
        verdicts = list(pool.map(clamd.scan_bytes, plaintexts))
        wall = time.perf_counter() - began
    if not all(verdict.clean for verdict in verdicts):
        raise SystemExit("clamd found something in random bytes: check its signatures")
    return wall


def wait_for_verdict_caching(scanner_url: str) -> None:
    """Ours stores verdicts only once clamd has surely loaded the signatures, a few seconds
    after they change (clamd_signatures.SignatureWatch): measure the cache once it is on."""
    deadline = time.monotonic() + 60
    while not requests.get(f"{scanner_url}/health", timeout=10).json()["verdicts_cached"]:
        if time.monotonic() > deadline:
            raise SystemExit("our scanner did not start caching verdicts within 60 s")
        time.sleep(0.5)


def cached_latencies(url: str, user: User, file: dict) -> list[float]:
    with requests.Session() as session:
        scan_encrypted(session, url, user, file)  # warm the connection
        return [scan_encrypted(session, url, user, file) for _ in range(CACHED_REQUESTS)]


def http_floor(url: str) -> list[float]:
    """GET public_key on the same scanner: what any answer costs this client and server."""
    latencies = []
    with requests.Session() as session:
        for _ in range(CACHED_REQUESTS):
            began = time.perf_counter()
            session.get(f"{url}{MEDIA_PROXY}/public_key", timeout=10).raise_for_status()
            latencies.append(time.perf_counter() - began)
    return latencies


def run(services: Services, scanners: dict[str, str]) -> tuple[dict, dict, dict]:
    """{size: {scanner: Results}}, {size: clamd alone seconds}, {scanner: cached latencies}."""
    user = services.new_user()
    listen = services.settings.clamav.listen
    clamd = ClamdClient(listen.connect_host, listen.port, timeout=120)
    wait_for_verdict_caching(scanners["ours"])
    by_size: dict[int, dict[str, Results]] = {}
    clamd_alone: dict[int, float] = {}
    known = {}
    for index, size in enumerate(SIZES):
        by_size[size] = {name: Results() for name in scanners}
        order = list(scanners) if index % 2 else list(reversed(scanners))
        for name in order:
            known[name] = cold_batch(
                scanners[name], user, services.synapse_url, size, by_size[size][name]
            )
        clamd_alone[size] = clamd_batch(clamd, size)
    cached = {
        f"{name}, cached verdict": cached_latencies(url, user, known[name])
        for name, url in scanners.items()
    }
    cached["ours, GET public_key (the HTTP floor)"] = http_floor(scanners["ours"])
    return by_size, clamd_alone, cached


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def report(by_size: dict, clamd_alone: dict, cached: dict) -> None:
    print(
        f"{FILES_PER_SIZE} fresh files per size and scanner, {CONCURRENCY} at a time "
        f"(p50/p95 latency in ms; ratio = files/s ours / files/s 1.0.8; best possible = "
        f"1.0.8's time / clamd alone's time on as many fresh plaintexts)"
    )
    print(
        f"{'size':>8} {'ours files/s':>13} {'1.0.8 files/s':>14} {'ratio':>6} "
        f"{'ours p50/p95':>14} {'1.0.8 p50/p95':>15} {'clamd alone files/s':>20} "
        f"{'best possible':>14}"
    )
    for size, results in by_size.items():
        ours, theirs = results["ours"], results["1.0.8"]
        print(
            f"{size >> 10:>5} KiB {ours.files_per_second:>13.1f} {theirs.files_per_second:>14.1f} "
            f"{ours.files_per_second / theirs.files_per_second:>6.2f} "
            f"{ms(median(ours.latencies)) + '/' + ms(percentile(ours.latencies, 0.95)):>14} "
            f"{ms(median(theirs.latencies)) + '/' + ms(percentile(theirs.latencies, 0.95)):>15} "
            f"{FILES_PER_SIZE / clamd_alone[size]:>20.1f} "
            f"{theirs.wall / clamd_alone[size]:>14.2f}"
        )
    mix = {name: sum(r[name].wall for r in by_size.values()) for name in ("ours", "1.0.8")}
    best = mix["1.0.8"] / sum(clamd_alone.values())
    print(
        f"whole mix (same sizes and counts): {mix['1.0.8'] / mix['ours']:.2f}x faster "
        f"(goal >= 2; best possible {best:.2f})"
    )
    for name, latencies in cached.items():
        print(
            f"{name}: p50 {ms(median(latencies))} ms, "
            f"p95 {ms(percentile(latencies, 0.95))} ms ({CACHED_REQUESTS} sequential requests)"
        )
    print("goal: our cached verdict under 5 ms")


def summary(by_size: dict, clamd_alone: dict, cached: dict) -> list[Row]:
    """The summary rows: throughput ratio per size and for the mix, and the cached verdict."""
    rows = []
    for size, results in by_size.items():
        ours, theirs = results["ours"], results["1.0.8"]
        figure = (
            f"{ours.files_per_second:.1f} against {theirs.files_per_second:.1f} files/s "
            f"(bound {theirs.wall / clamd_alone[size]:.2f})"
        )
        ratio = ours.files_per_second / theirs.files_per_second
        rows.append(
            at_least(f"scan_encrypted {_size(size)}, ours / 1.0.8", figure, ratio, THROUGHPUT_GOAL)
        )
    mix = {name: sum(r[name].wall for r in by_size.values()) for name in ("ours", "1.0.8")}
    bound = mix["1.0.8"] / sum(clamd_alone.values())
    figure = f"{mix['ours']:.1f} s against {mix['1.0.8']:.1f} s (bound {bound:.2f})"
    ratio = mix["1.0.8"] / mix["ours"]
    rows.append(at_least("scan_encrypted whole mix, ours / 1.0.8", figure, ratio, THROUGHPUT_GOAL))
    ours_ms = median(cached["ours, cached verdict"]) * 1000
    theirs_ms = median(cached["1.0.8, cached verdict"]) * 1000
    floor_ms = median(cached["ours, GET public_key (the HTTP floor)"]) * 1000
    figure = f"p50 {ours_ms:.1f} ms against {theirs_ms:.1f} ms (empty GET {floor_ms:.1f} ms)"
    goal = f"p50 < {CACHED_GOAL_MS:g} ms"
    rows.append(
        Row(
            "cached verdict, ours / 1.0.8",
            figure,
            ours_ms / theirs_ms,
            goal,
            ours_ms < CACHED_GOAL_MS,
        )
    )
    return rows


def _size(size: int) -> str:
    return f"{size >> 20} MiB" if size >= 1 << 20 else f"{size >> 10} KiB"


def main() -> None:
    if shutil.which("clamdscan") is None:
        cannot_run(f"clamdscan is not installed: {INSTALL_CLAMDSCAN}")
    with tempfile.TemporaryDirectory() as state, tempfile.TemporaryDirectory() as reference_dir:
        with Services(
            Path(state),
            ["clamd", "synapse", "content-scanner"],
            edit_synapse_config=lambda config: config.update(enable_authenticated_media=False),
        ) as services:
            reference, reference_url = reference_scanner(services, Path(reference_dir))
            scanners = {"ours": services.scanner_url, "1.0.8": reference_url}
            try:
                check_verdicts(services, scanners)
                by_size, clamd_alone, cached = run(services, scanners)
            finally:
                stop(reference)
    report(by_size, clamd_alone, cached)
    emit("content_scanner", summary(by_size, clamd_alone, cached))


if __name__ == "__main__":
    main()
