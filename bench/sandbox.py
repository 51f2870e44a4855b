#!/usr/bin/env python
"""The runner sandbox's cost: `.venv/bin/python bench/sandbox.py [--samples N]`.

Times a runner's cold start (start → its "ready" message, empty setup()) through the real
LocalProcessBackend with SWITCHBOARD_SANDBOX=bwrap and =none, alternating in one run so
the machine's noise falls on both alike, with the warm spare ready (a pause before each
start) and back to back (the spare still importing: a direct spawn). Also the import
check. Prints p50/p90 and the bwrap/none ratio; needs no database, Redis or server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

from dashboard.runtime import sandbox  # noqa: E402
from dashboard.runtime.backend import LocalProcessBackend, RunnerSpec  # noqa: E402
from dashboard.runtime.sandboxed import SOCKET_NAME  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def cold_start(backend: LocalProcessBackend, bundle: Path) -> float:
    runner_id = f"r-{uuid.uuid4().hex[:8]}"
    spec = RunnerSpec(
        runner_id=runner_id,
        app="bench",
        revision="rev",
        bundle_dir=bundle,
        entrypoint="app.py::Fast",
        socket_path=Path(settings.VAR_DIR) / "run" / runner_id / SOCKET_NAME,
        log_path=Path(settings.VAR_DIR) / "logs" / f"{runner_id}.log",
        max_multiplexing=1,
        machine_type="XS",
    )
    started = time.perf_counter()
    process = await backend.start(spec)
    message = await process.ready_message()
    elapsed = (time.perf_counter() - started) * 1000
    assert message == "ready", (settings.SANDBOX, message, spec.log_path.read_text())
    process.kill()
    await process.wait()
    return elapsed


async def measure(mode: str, bundle: Path, samples: int) -> dict[str, list[float]]:
    settings.SANDBOX = mode
    backend = LocalProcessBackend()
    spaced, back_to_back = [], []
    for _ in range(samples):
        await asyncio.sleep(1.5)  # The spare is ready.
        spaced.append(await cold_start(backend, bundle))
    for _ in range(samples):
        back_to_back.append(await cold_start(backend, bundle))
    spare = backend._spare
    if spare is not None:
        process = await spare
        process.kill()
        await process.wait()
    return {"spare ready": spaced, "back to back": back_to_back}


def import_check(bundle: Path, mode: str, samples: int) -> list[float]:
    import subprocess

    settings.SANDBOX = mode
    times = []
    for _ in range(samples):
        wrapped = sandbox.wrap(["-m", "dashboard.sdk.inspect"], bundle_dir=bundle)
        started = time.perf_counter()
        subprocess.run(
            [*wrapped.argv, wrapped.app_dir, "app.py::Fast"],
            env=wrapped.env,
            cwd=wrapped.cwd,
            check=True,
            capture_output=True,
        )
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=15)
    args = parser.parse_args()
    var_dir = Path(tempfile.mkdtemp(prefix="sb-bench-sandbox-"))
    settings.VAR_DIR = var_dir
    bundle = var_dir / "bundle"
    shutil.copytree(ROOT / "examples" / "fast", bundle)
    sandbox.share_bundle(bundle)
    results: dict[str, dict[str, list[float]]] = {"bwrap": {}, "none": {}}
    try:
        # Two rounds each, interleaved: bwrap, none, bwrap, none.
        for _ in range(2):
            for mode in ("bwrap", "none"):
                got = asyncio.run(measure(mode, bundle, args.samples // 2 or 1))
                for key, values in got.items():
                    results[mode].setdefault(key, []).extend(values)
                checks = import_check(bundle, mode, max(1, args.samples // 4))
                results[mode].setdefault("import check", []).extend(checks)
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)
    print(f"{'runner cold start (ms)':34} {'bwrap p50/p90':>15} {'none p50/p90':>15} {'ratio':>6}")
    for key in ("spare ready", "back to back", "import check"):
        on, off = results["bwrap"][key], results["none"][key]
        print(
            f"{key:34} {pct(on, 0.5):7.0f}/{pct(on, 0.9):<7.0f} {pct(off, 0.5):7.0f}/"
            f"{pct(off, 0.9):<7.0f} {statistics.median(on) / statistics.median(off):6.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
