#!/usr/bin/env python
"""Switchboard's benchmarks: `make bench` (or `.venv/bin/python bench/run.py`).

Starts a private copy of the whole system (`manage.py up` on its own PostgreSQL
database, Redis db, ports and var dir), measures, prints the figures and stops it.
Figures are compared as ratios inside one run because these machines are noisy; the
goals come from issues 2 and 3 and are printed beside each figure, never asserted.

Each run is kept as bench/results/<UTC date>-<commit>.json: the commit (and whether the
tree had changes), the machine, the date and every figure. The lines printed while it runs
are made from those same figure records. `bench/compare.py` (`make bench-compare`) shows
two runs side by side.

    --only platform|dashboard|browser|recovery|ray   run one group (ray: both backends
                                        side by side, on a two-node Ray cluster it starts)
    --quick                             fewer samples (a smoke run)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS_DIR = ROOT / "bench" / "results"
# Bumped when a figure record changes shape, so compare.py can tell old files apart.
FORMAT = 1

# Every figure of this run, in the order measured: the one record that is printed, saved
# and compared (see report()).
FIGURES: list[dict] = []
_group = ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def section(title: str) -> None:
    """Starts a group of figures; the figures reported next belong to it."""
    global _group
    _group = title
    print(f"\n{title}", flush=True)


def format_values(figure: dict) -> str:
    """A figure's values as one line: "p50 18  p90 25"; a lone "value" has no label."""
    digits = figure["digits"]
    parts = []
    for label, value in figure["values"].items():
        number = str(value) if isinstance(value, int) else f"{value:,.{digits}f}"
        parts.append(number if label == "value" else f"{label} {number}")
    return "  ".join(parts)


def report(
    name: str,
    values: dict[str, float | int],
    *,
    digits: int = 0,
    goal: str = "",
    better: str = "lower",
) -> None:
    """Records one figure and prints it.

    name is unique within a run (compare.py matches figures by it) and names the unit;
    values maps a label ("p50", "p90", "value", ...) to a number; digits is how many
    decimals are shown (the record keeps more); better says which way is an improvement,
    for compare.py.
    """
    figure = {
        "group": _group,
        "name": name,
        # Four decimals keep what any printed figure needs without float noise in the file.
        "values": {k: v if isinstance(v, int) else round(v, 4) for k, v in values.items()},
        "digits": digits,
        "goal": goal,
        "better": better,
    }
    FIGURES.append(figure)
    print(f"  {name:<62} {format_values(figure):<36} {goal}", flush=True)


def percentiles(values: list[float]) -> dict[str, float]:
    return {"p50": pct(values, 0.5), "p90": pct(values, 0.9)}


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception:  # noqa: BLE001 - not there yet.
            pass
        time.sleep(0.01)
    raise SystemExit(f"bench: timed out waiting for {what}")


# -- the private system ------------------------------------------------------------------


def prepare_environment(var_dir: Path) -> dict[str, str]:
    db_url = os.environ.get(
        "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/switchboard_bench"
    )
    import psycopg

    base, _, name = db_url.rpartition("/")
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    ports = {k: free_port() for k in ("web", "gateway", "runtime")}
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9"),
        "SWITCHBOARD_VAR_DIR": str(var_dir),
        "SWITCHBOARD_WEB_PORT": str(ports["web"]),
        "SWITCHBOARD_API_URL": f"http://127.0.0.1:{ports['web']}",
        "SWITCHBOARD_GATEWAY_PORT": str(ports["gateway"]),
        "SWITCHBOARD_GATEWAY_URL": f"http://127.0.0.1:{ports['gateway']}",
        "SWITCHBOARD_RUNTIME_PORT": str(ports["runtime"]),
        "SWITCHBOARD_RUNTIME_URL": f"http://127.0.0.1:{ports['runtime']}",
        "XDG_CONFIG_HOME": str(var_dir / "config"),
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update(env)
    import redis

    redis.Redis.from_url(env["REDIS_URL"]).flushdb()
    return env


def start_system(env: dict[str, str], var_dir: Path) -> subprocess.Popen:
    log = open(var_dir / "up.log", "wb")  # noqa: SIM115 - lives as long as the system.
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "up"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_until(
        lambda: (
            b"Switchboard is running" in (var_dir / "up.log").read_bytes()
            or proc.poll() is not None
        ),
        180,
        "manage.py up",
    )
    if proc.poll() is not None:
        raise SystemExit("bench: manage.py up failed:\n" + (var_dir / "up.log").read_text())
    return proc


def stop_system(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def echo_source(var_dir: Path, version: str) -> Path:
    folder = var_dir / "bench-src" / version
    shutil.copytree(ROOT / "bench" / "apps" / "echo", folder, dirs_exist_ok=True)
    app = folder / "app.py"
    app.write_text(re.sub(r"^VERSION = .*$", f"VERSION = {version!r}", app.read_text(), flags=re.M))
    return app


def deploy_echo(api, var_dir: Path, app: str, version: str, strategy: str = "recreate") -> str:
    from dashboard.cli import bundle

    data, entrypoint = bundle.build(f"{echo_source(var_dir, version)}::Echo")
    answer = api.deploy(
        app, data, entrypoint, strategy=strategy, message=version, auth_mode="public"
    )
    operation = finish(api, answer["operation"]["id"])
    if operation["state"] != "succeeded":
        raise SystemExit(f"bench: deploy of {app} {version} failed: {operation['error']}")
    return answer["revision"]["id"]


def finish(api, operation_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        operation = api.get_operation(operation_id)
        if operation["finished_at"]:
            return operation
        time.sleep(0.02)
    raise SystemExit(f"bench: operation {operation_id} did not finish in {timeout}s")


# -- platform (issue 2) ------------------------------------------------------------------


def bench_platform(api, var_dir: Path, samples: int) -> None:
    import httpx

    from dashboard import runner_states
    from dashboard.controlplane import runtime_client

    section("Platform (issue 2)")
    gateway = os.environ["SWITCHBOARD_GATEWAY_URL"]
    revisions = [deploy_echo(api, var_dir, "bench", f"v{i}") for i in (1, 2)]

    # Runner cold start: start request to healthy, empty setup(). The runtime keeps one
    # warm spare interpreter; after any pause it is ready, but starts less than ~0.5 s
    # apart find it still importing and spawn directly, so both cases are measured.
    def cold_start() -> float:
        started = time.perf_counter()
        (runner,) = runtime_client.start_runners(revisions[1], 1, key=str(uuid.uuid4()))
        ready = runtime_client.wait_runner(runner["id"], until="ready", timeout=30)
        elapsed = (time.perf_counter() - started) * 1000
        assert ready["state"] in runner_states.READY, ready
        runtime_client.kill_runner(runner["id"])
        return elapsed

    spaced, back_to_back = [], []
    for _ in range(samples):
        time.sleep(1.0)
        spaced.append(cold_start())
    for _ in range(samples):
        back_to_back.append(cold_start())
    report(
        "runner cold start, empty setup(), spare ready (ms)",
        percentiles(spaced),
        goal="goal p50 < 500",
    )
    report("runner cold start, back to back (ms)", percentiles(back_to_back))

    # set-rev recreate: from sending the API call until the gateway routes to the target.
    # The target is kept warm, so its cold start is excluded, as the goal says. A second
    # thread polls the gateway meanwhile: the gateway may switch before the API answers.
    client = httpx.Client(timeout=10)
    switch, answered = [], []
    current = revisions[1]  # The last deploy.
    # One long-lived thread sends the API calls: httpclient keeps one pooled client per
    # thread, and building a new one (an SSL context) would be counted as switch time.
    caller = ThreadPoolExecutor(max_workers=1)
    caller.submit(api.list_apps).result()
    for _ in range(samples):
        target = current = revisions[0] if current == revisions[1] else revisions[1]
        (warm,) = runtime_client.start_runners(target, 1, key=str(uuid.uuid4()))
        runtime_client.wait_runner(warm["id"], until="ready", timeout=30)
        # Taking the warm spare makes the runtime spawn the next one, which imports for
        # a few hundred ms of CPU: let it finish, it belongs to the cold start excluded here.
        time.sleep(1.0)
        started = time.perf_counter()
        call = caller.submit(api.set_rev, "bench", target, strategy="recreate")
        while client.get(f"{gateway}/bench/").headers.get("X-Switchboard-Revision") != target:
            # A pause between polls: a tight loop would take the CPU the API needs (2 cores).
            time.sleep(0.002)
        switch.append((time.perf_counter() - started) * 1000)
        call.result()
        answered.append((time.perf_counter() - started) * 1000)
    report(
        "set-rev recreate: API call → gateway routes (ms)",
        percentiles(switch),
        digits=1,
        goal="goal p50 < 50",
    )
    report("set-rev recreate: API call → API answered (ms)", percentiles(answered), digits=1)

    # Rolling set-rev: whole operation, minus setup() (empty here, so nothing to subtract).
    # Rolling set-rev: whole operation (Celery pick-up, target runner start and health,
    # switch, drain) minus setup(), which is empty here. Measured with the warm spare ready
    # (a pause before each switch) and back to back, as for the cold start.
    def rolling_switch() -> float:
        nonlocal current
        target = current = revisions[0] if current == revisions[1] else revisions[1]
        started = time.perf_counter()
        answer = api.set_rev("bench", target, strategy="rolling")
        operation = finish(api, answer["operation"]["id"])
        assert operation["state"] == "succeeded", operation["error"]
        return (time.perf_counter() - started) * 1000

    spaced_rolling, back_to_back_rolling = [], []
    for _ in range(max(5, samples // 2)):
        time.sleep(1.0)
        spaced_rolling.append(rolling_switch())
    for _ in range(max(5, samples // 2)):
        back_to_back_rolling.append(rolling_switch())
    report(
        "rolling set-rev total − setup(), spare ready (ms)",
        percentiles(spaced_rolling),
        goal="goal p50 < 500",
    )
    report("rolling set-rev total − setup(), back to back (ms)", percentiles(back_to_back_rolling))

    report_gateway(asyncio.run(gateway_overhead(api, gateway, samples)))


def report_gateway(measured: dict) -> None:
    latency, d_rate, g_rate = measured["latency"], measured["direct"], measured["gateway"]
    d50, g50 = pct(latency["direct"], 0.5), pct(latency["gateway"], 0.5)
    report("latency direct to runner (ms)", percentiles(latency["direct"]), digits=2)
    report("latency through the gateway (ms)", percentiles(latency["gateway"]), digits=2)
    report("gateway overhead at p50 (ms)", {"value": g50 - d50}, digits=2, goal="goal < 2")
    report(
        "throughput, 16 clients (req/s)",
        {"direct": d_rate, "gateway": g_rate},
        better="higher",
    )
    report(
        "gateway throughput ÷ direct",
        {"value": g_rate / d_rate},
        digits=2,
        goal="goal ≥ 0.5",
        better="higher",
    )


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection sending one prebuilt GET at a time.

    The load generator shares the 2 cores with the gateway and the runner, so it must
    cost as little as it can per request: aiohttp's client spent more CPU per request
    than the gateway does, and the throughput ratio then measured the load generator as
    much as the gateway. This writes fixed bytes and parses the answer with httptools.
    """

    def __init__(self, request: bytes) -> None:
        import httptools

        self.request = request
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future | None = None
        self.headers: dict[bytes, bytes] = {}

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_message_complete(self) -> None:
        self.waiter.set_result(self.parser.get_status_code())

    def connection_lost(self, exc) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("closed"))

    async def get(self) -> int:
        self.waiter = asyncio.get_running_loop().create_future()
        self.headers = {}
        self.transport.write(self.request)
        return await self.waiter


async def gateway_overhead(
    api, gateway: str, samples: int, direct: tuple[int, str] | None = None
) -> dict:
    """Latency and throughput of the same runner called directly and through the gateway.

    `direct` is (port, path) on 127.0.0.1 for a backend whose runners are reached over
    HTTP (Ray: Serve's proxy and the revision's route); by default the runner's socket.
    """
    from urllib.parse import urlsplit

    from django.conf import settings

    # One runner behind the gateway, the same one the direct path calls: otherwise the
    # autoscaler answers the gateway's 16 clients with a second runner (and the runtime
    # imports a new spare), which is scaling, not gateway overhead.
    finish(api, api.scale("bench", {"max_concurrency": 1})["operation"]["id"])
    loop = asyncio.get_running_loop()
    host, port = urlsplit(gateway).hostname, urlsplit(gateway).port

    async def connect(name: str) -> _Connection:
        if name == "gateway":
            request = b"GET /bench/ HTTP/1.1\r\nHost: gateway\r\n\r\n"
            _, conn = await loop.create_connection(lambda: _Connection(request), host, port)
        elif direct is not None:
            request = f"GET {direct[1]} HTTP/1.1\r\nHost: runner\r\n\r\n".encode()
            _, conn = await loop.create_connection(
                lambda: _Connection(request), "127.0.0.1", direct[0]
            )
        else:
            request = b"GET / HTTP/1.1\r\nHost: runner\r\n\r\n"
            _, conn = await loop.create_unix_connection(lambda: _Connection(request), socket_path)
        return conn

    # The runner the gateway routes to; the direct path calls the same one on its socket.
    socket_path = ""
    probe = await connect("gateway")
    assert await probe.get() == 200
    runner_id = probe.headers[b"x-switchboard-runner"].decode()
    probe.transport.close()
    socket_path = str(Path(settings.VAR_DIR) / "run" / runner_id / "runner.sock")  # sandbox.py

    async def timed(conn: _Connection) -> float:
        started = time.perf_counter()
        status = await conn.get()
        assert status == 200, status
        return (time.perf_counter() - started) * 1000

    conns = {name: await connect(name) for name in ("direct", "gateway")}
    latency: dict[str, list[float]] = {"direct": [], "gateway": []}
    for _ in range(samples * 40):  # Interleaved, so drift in machine load hits both alike.
        for name in latency:
            latency[name].append(await timed(conns[name]))
    for conn in conns.values():
        conn.transport.close()

    async def throughput(name: str, seconds: float = 3.0, concurrency: int = 16) -> float:
        clients = [await connect(name) for _ in range(concurrency)]
        done = 0
        deadline = time.perf_counter() + seconds

        async def client(conn: _Connection) -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                assert await conn.get() == 200
                done += 1

        await asyncio.gather(*(client(c) for c in clients))
        for conn in clients:
            conn.transport.close()
        return done / seconds

    rates: dict[str, list[float]] = {"direct": [], "gateway": []}
    for _ in range(2):
        for name in rates:
            rates[name].append(await throughput(name))
    return {"latency": latency, "direct": max(rates["direct"]), "gateway": max(rates["gateway"])}


# -- backends side by side (issue 14) -------------------------------------------------


def bench_ray(samples: int) -> None:
    """The local backend and the Ray backend, the same figures in one run: each on a fresh
    private system of its own, one after the other (two at once would share the Celery
    broker), the Ray one on a two-node cluster on this machine (tests/ray/cluster.py)."""
    from tests.ray import cluster

    section("Backends side by side: local and Ray (issue 14)")
    if not cluster.installed():
        print("  skipped: the ray extra is not installed (make setup installs it)")
        return
    measured = {}
    with cluster.running_cluster() as ray_cluster:
        for backend in ("local", "ray"):
            var_dir = Path(tempfile.mkdtemp(prefix=f"switchboard-bench-{backend}-"))
            env = prepare_environment(var_dir)
            if backend == "ray":
                env.update(
                    {
                        "SWITCHBOARD_BACKEND": "ray",
                        "RAY_ADDRESS": ray_cluster.address,
                        "SWITCHBOARD_RAY_SERVE_PORT": str(free_port()),
                        "RAY_TMPDIR": str(ray_cluster.temp_dir),
                        "RAY_USAGE_STATS_ENABLED": "0",
                    }
                )
            measured[backend] = measure_backend(env, var_dir, max(3, samples // 5), samples)
    for key, name, digits in (
        ("cold", "cold start: start request → ready, empty setup() (ms)", 0),
        ("recreate", "set-rev recreate: API call → gateway routes (ms)", 1),
        ("rolling", "rolling set-rev total − setup() (ms)", 0),
        ("overhead", "gateway overhead at p50 (ms)", 2),
        ("ratio", "gateway throughput ÷ direct, 16 clients", 2),
    ):
        values = {backend: figures[key] for backend, figures in measured.items()}
        values["ray ÷ local"] = values["ray"] / values["local"]
        better = "higher" if key == "ratio" else "lower"
        report(f"{name}, local | ray", values, digits=digits, better=better)


def measure_backend(env: dict[str, str], var_dir: Path, n: int, samples: int) -> dict:
    """One backend's figures (p50s) on a private system started with `env`."""
    import httpx
    from django.conf import settings

    from dashboard import runner_states
    from dashboard.api_client import ControlApi
    from dashboard.controlplane import runtime_client

    settings.RUNTIME_URL = env["SWITCHBOARD_RUNTIME_URL"]
    settings.VAR_DIR = var_dir
    # This process's key, so that it may call the runtime's admin API (its secret derives
    # from the key; a new var dir would otherwise get a key of its own).
    env["SECRET_KEY"] = settings.SECRET_KEY
    proc = start_system(env, var_dir)
    try:
        token = json.loads((var_dir / "config" / "switchboard" / "config.json").read_text())
        api = ControlApi(env["SWITCHBOARD_API_URL"], token["token"], source="api", timeout=60)
        gateway = env["SWITCHBOARD_GATEWAY_URL"]
        revisions = [deploy_echo(api, var_dir, "bench", f"v{i}") for i in (1, 2)]
        current = revisions[1]

        def ended(revision: str) -> bool:
            rows = runtime_client.list_runners(revision=revision)
            return all(r["state"] in runner_states.GONE for r in rows)

        cold = []  # A revision that is not Current: its runner (Ray: application) starts.
        for _ in range(n):
            started = time.perf_counter()
            (runner,) = runtime_client.start_runners(revisions[0], 1, key=str(uuid.uuid4()))
            ready = runtime_client.wait_runner(runner["id"], until="ready", timeout=120)
            cold.append((time.perf_counter() - started) * 1000)
            assert ready["state"] in runner_states.READY, ready
            runtime_client.kill_runner(runner["id"])
            wait_until(lambda: ended(revisions[0]), 120, "the cold-started runner gone")
            time.sleep(2.0)  # Ray: Serve may still be removing the application.

        client = httpx.Client(timeout=30)
        recreate = []  # The target is warm: its start is the cold start above.
        for _ in range(n):
            target = current = revisions[0] if current == revisions[1] else revisions[1]
            (warm,) = runtime_client.start_runners(target, 1, key=str(uuid.uuid4()))
            runtime_client.wait_runner(warm["id"], until="ready", timeout=120)
            time.sleep(1.0)
            started = time.perf_counter()
            answer = api.set_rev("bench", target, strategy="recreate")
            while client.get(f"{gateway}/bench/").headers.get("X-Switchboard-Revision") != target:
                time.sleep(0.002)
            recreate.append((time.perf_counter() - started) * 1000)
            finish(api, answer["operation"]["id"])

        rolling = []
        for _ in range(n):
            target = current = revisions[0] if current == revisions[1] else revisions[1]
            time.sleep(1.0)
            started = time.perf_counter()
            answer = api.set_rev("bench", target, strategy="rolling")
            operation = finish(api, answer["operation"]["id"])
            assert operation["state"] == "succeeded", operation["error"]
            rolling.append((time.perf_counter() - started) * 1000)

        serve_port = env.get("SWITCHBOARD_RAY_SERVE_PORT")
        direct = (int(serve_port), f"/sb/bench/{current}/") if serve_port else None
        gateway_figures = asyncio.run(gateway_overhead(api, gateway, samples, direct))
    finally:
        stop_system(proc)
    latency = gateway_figures["latency"]
    return {
        "cold": pct(cold, 0.5),
        "recreate": pct(recreate, 0.5),
        "rolling": pct(rolling, 0.5),
        "overhead": pct(latency["gateway"], 0.5) - pct(latency["direct"], 0.5),
        "ratio": gateway_figures["gateway"] / gateway_figures["direct"],
    }


# -- dashboard (issue 3) -----------------------------------------------------------------


def versions_history(admin, n: int) -> str:
    """An app with `n` revisions, each from a deploy operation with three steps, as a real
    history has (made once per run); the URL of its Versions page."""
    from django.db import connection
    from django.utils import timezone

    from dashboard.controlplane.models import (
        App,
        Operation,
        OperationStep,
        Revision,
        RevisionStatus,
    )

    name = f"versions-{n}"
    if App.objects.filter(name=name).exists():
        return f"/apps/{name}/versions"
    app = App.objects.create(name=name, owner=admin, settings={"machine_type": "XS"})
    now = timezone.now()
    statuses = [RevisionStatus.DEPLOYED, RevisionStatus.FAILED, RevisionStatus.SUSPENDED]
    Revision.objects.bulk_create(
        [
            Revision(
                app=app,
                status=statuses[i % 3],
                entrypoint="app.py::Echo",
                bundle_sha256="0" * 64,
                bundle_size=1,
                message=f"revision {i}",
                annotations={"build": str(i)},
                settings={"machine_type": "XS", "keep_alive": 10, "max_concurrency": 2},
                deployed_by=admin,
                created_at=now - timezone.timedelta(seconds=n - i),
            )
            for i in range(n)
        ],
        batch_size=2000,
    )
    app.current_revision = Revision.objects.filter(app=app, status=RevisionStatus.DEPLOYED).first()
    app.save()
    operations = Operation.objects.bulk_create(
        [
            Operation(
                app=app,
                kind="deploy",
                state="succeeded" if revision.status != RevisionStatus.FAILED else "failed",
                requester=admin,
                requester_name="admin",
                source="cli",
                revision=revision,
                created_at=revision.created_at,
                started_at=revision.created_at,
                finished_at=revision.created_at + timezone.timedelta(seconds=2),
            )
            for revision in Revision.objects.filter(app=app).only("id", "status", "created_at")
        ],
        batch_size=2000,
    )
    OperationStep.objects.bulk_create(
        [OperationStep(operation=op, message=f"step {i}") for op in operations for i in range(3)],
        batch_size=5000,
    )
    with connection.cursor() as cursor:
        # What autovacuum gives a real install: fresh statistics and visibility maps.
        cursor.execute("VACUUM ANALYZE")
    return f"/apps/{name}/versions"


def running_operation(admin, app) -> str:
    """A running set-rev of `app` with 8 steps, submitted by `admin` from the dashboard;
    the URL of its action panel's poll."""
    from django.utils import timezone

    from dashboard.controlplane.models import Operation, OperationStep

    key = str(uuid.uuid4())
    operation = Operation.objects.create(
        app=app,
        kind="set_rev",
        state="running",
        requester=admin,
        requester_name="admin",
        source="dashboard",
        idempotency_key=key,
        started_at=timezone.now(),
    )
    OperationStep.objects.bulk_create(
        [OperationStep(operation=operation, message=f"step {i}") for i in range(8)]
    )
    return f"/apps/{app.name}/actions/{key}"


def bench_dashboard(samples: int) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from dashboard.controlplane.models import (
        App,
    )

    section("Dashboard (issue 3)")
    admin = get_user_model().objects.get(username="admin")
    client = Client()
    client.force_login(admin)
    # Every size shows one full page of 25 rows (VERSIONS_PER_PAGE): a short history
    # against long ones, the same work per page, so the ratio is what the history costs.
    sizes = (25, 1_000, 10_000)
    urls = {n: versions_history(admin, n) for n in sizes}
    for url in urls.values():
        client.get(url)  # Warm caches and connections.

    # Round-robin over the sizes, so a burst of load elsewhere hits all of them alike.
    times: dict[int, list[float]] = {n: [] for n in sizes}
    queries: dict[int, int] = {}
    rows: dict[int, int] = {}
    for _ in range(samples * 4):
        for n in sizes:
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                response = client.get(urls[n])
                times[n].append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.status_code
            queries[n] = len(captured)
            rows[n] = response.content.count(b'data-testid="revision-row"')
    timings = {n: pct(times[n], 0.5) for n in sizes}
    for n in sizes:
        report(
            f"Versions page, {n:>6,} revisions, {rows[n]} rows (ms, queries)",
            {"p50": timings[n], "queries": queries[n]},
            digits=1,
        )
    report(
        "Versions page time ratio 10,000 ÷ 25 (25 rows each)",
        {"value": timings[10_000] / timings[25]},
        digits=2,
        goal="goal ≤ 1.5",
    )

    app = App.objects.get(name="versions-25")
    url = running_operation(admin, app)
    times = []
    for _ in range(samples * 10):
        started = time.perf_counter()
        response = client.get(url, headers={"HX-Request": "true"})
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
    report("progress poll, in-process test client (ms)", percentiles(times), digits=2)

    # The same poll as a browser sends it: over HTTP to the running gunicorn, on one
    # keep-alive connection with the session cookie. The server's own time is its
    # Server-Timing header (dashboard/web/middleware.py); the round trip adds gunicorn's
    # HTTP handling and loopback. Measured back to back, and spaced 100 ms apart as polls
    # are (a browser polls once a second): on this VM any request after an idle pause
    # runs slower, the bare favicon redirect included, so both are shown.
    import http.client

    web = http.client.HTTPConnection("127.0.0.1", int(os.environ["SWITCHBOARD_WEB_PORT"]))
    headers = {"HX-Request": "true", "Cookie": f"sessionid={client.cookies['sessionid'].value}"}

    def poll_over_http(path: str, pause: float) -> tuple[list[float], list[float]]:
        server, round_trip = [], []
        for i in range(samples * 10 + 20):
            time.sleep(pause)
            started = time.perf_counter()
            web.request("GET", path, headers=headers)
            answer = web.getresponse()
            answer.read()
            assert answer.status in (200, 302), answer.status
            if i >= 20:  # The first requests warm each gunicorn thread's connections.
                round_trip.append((time.perf_counter() - started) * 1000)
                server.append(float(answer.headers["Server-Timing"].partition("dur=")[2]))
        return server, round_trip

    for label, pause in (("back to back", 0.0), ("100 ms apart", 0.1)):
        server, round_trip = poll_over_http(url, pause)
        bare, _ = poll_over_http("/favicon.ico", pause)
        report(
            f"progress poll over HTTP, {label}: server time (ms)",
            percentiles(server),
            digits=2,
            goal="goal p50 < 5",
        )
        report(
            f"progress poll over HTTP, {label}: round trip (ms)", percentiles(round_trip), digits=2
        )
        report(f"bare request over HTTP, {label}: server time (ms)", percentiles(bare), digits=2)
    web.close()
    bench_web_stacks(url, headers, samples)


# The web stack's own parts against Django's, each in its own granian worker on the same
# database and Redis: (settings module, ASGI application). BENCHMARKS.md, "The progress
# poll under ASGI".
WEB_STACKS = {
    "Django's handler and Redis cache": ("bench.stock_settings", "bench.stock_asgi:application"),
    "one Redis client per process": ("dashboard.settings", "bench.stock_asgi:application"),
    "as shipped (and the chain in one thread)": (
        "dashboard.settings",
        "dashboard.asgi:application",
    ),
}


def bench_web_stacks(poll: str, headers: dict[str, str], samples: int) -> None:
    """The progress poll's server time through each of WEB_STACKS, interleaved: back to
    back in bursts of 10 per server, and spaced 100 ms apart one by one."""
    import http.client

    section("Web stack side by side (issue 12)")
    procs, servers = [], {}
    try:
        for name, (settings_module, target) in WEB_STACKS.items():
            port = free_port()
            env = {**os.environ, "DJANGO_SETTINGS_MODULE": settings_module, "PYTHONPATH": str(ROOT)}
            command = [sys.executable, "-m", "granian", "--interface", "asginl", target]
            command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
            procs.append(
                subprocess.Popen(
                    command,
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            servers[name] = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

        def server_time(conn: http.client.HTTPConnection, path: str) -> float:
            conn.request("GET", path, headers=headers)
            answer = conn.getresponse()
            answer.read()
            assert answer.status in (200, 302), answer.status
            return float(answer.headers["Server-Timing"].partition("dur=")[2])

        def answers(conn: http.client.HTTPConnection) -> float | None:
            try:
                return server_time(conn, "/favicon.ico")
            except (OSError, http.client.HTTPException):
                conn.close()  # A refused connect leaves it unable to send again.
                return None

        for name, conn in servers.items():
            wait_until(lambda c=conn: answers(c), 60, f"the {name} server")
            for _ in range(20):  # Warm the worker's connections and caches.
                server_time(conn, poll)
        for label, pause, burst, rounds in (
            ("back to back", 0.0, 10, samples),
            ("100 ms apart", 0.1, 1, samples * 4),
        ):
            polls: dict[str, list[float]] = {name: [] for name in servers}
            bare: dict[str, list[float]] = {name: [] for name in servers}
            for _ in range(rounds):
                for name, conn in servers.items():
                    for _ in range(burst):
                        time.sleep(pause)
                        polls[name].append(server_time(conn, poll))
                    if not pause:
                        bare[name] += [server_time(conn, "/favicon.ico") for _ in range(burst)]
            for name in servers:
                report(
                    f"progress poll, {label}: {name} (ms)",
                    percentiles(polls[name]),
                    digits=2,
                    goal="goal p50 < 5",
                )
                if bare[name]:
                    report(f"bare request, {label}: {name} (ms)", percentiles(bare[name]), digits=2)
            first, *_, shipped = servers
            report(
                f"progress poll, {label}: as shipped ÷ Django's",
                {"value": pct(polls[shipped], 0.5) / pct(polls[first], 0.5)},
                digits=2,
            )
    finally:
        for conn in servers.values():
            conn.close()
        for proc in procs:
            stop_system(proc)


# Installed in the page before each click: the time of the click on Confirm, and of the
# first DOM change after which the target row shows the Current badge.
WATCH_BADGE = """(row) => {
    window.sbClicked = window.sbBadgeMoved = null;
    document.addEventListener("click", (e) => {
        if (e.target.closest("[data-testid=confirm-button]")) window.sbClicked = performance.now();
    }, {capture: true, once: true});
    const seen = new MutationObserver(() => {
        if (document.querySelector(row + " [data-testid=current-badge]")) {
            window.sbBadgeMoved = performance.now();
            seen.disconnect();
        }
    });
    seen.observe(document.body, {childList: true, subtree: true});
}"""


def bench_browser(api, var_dir: Path, samples: int) -> None:
    from playwright.sync_api import sync_playwright

    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS

    section("Browser (issue 3)")
    web = os.environ["SWITCHBOARD_API_URL"]
    revisions = [deploy_echo(api, var_dir, "clicks", f"v{i}") for i in (1, 2)]
    password = (var_dir / "admin-password").read_text().strip()
    clicks, waited = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(web + "/login/")
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(lambda url: "/login" not in url)
        current = revisions[1]  # The last deploy.
        for _ in range(samples):
            target = current = revisions[0] if current == revisions[1] else revisions[1]
            page.goto(f"{web}/apps/clicks/versions")
            row = page.locator(f'[data-testid=revision-row][data-revision="{target[:8]}"]')
            row.get_by_test_id("rollback-button").click()
            dialog = page.get_by_test_id("confirm-dialog")
            dialog.get_by_label(re.compile("Recreate")).check()
            # Timed in the page: from the click event to the DOM change that shows the
            # badge. Playwright's own wait re-checks on a backoff (up to 500 ms apart), so
            # its time says more about its polling than about the page; it is kept too.
            page.evaluate(WATCH_BADGE, f'[data-testid=revision-row][data-revision="{target[:8]}"]')
            started = time.perf_counter()
            dialog.get_by_test_id("confirm-button").click()
            row.get_by_test_id("current-badge").wait_for(timeout=15_000)
            waited.append((time.perf_counter() - started) * 1000)
            clicks.append(page.evaluate("window.sbBadgeMoved - window.sbClicked"))
        browser.close()
    report(
        "click Confirm (recreate) → Current badge moved (ms)",
        percentiles(clicks),
        goal="goal < 1500",
    )
    report("the same, as Playwright's wait for the badge sees it (ms)", percentiles(waited))


# Watches the Versions page: when the summary's Current shows `target` (Date.now(), to
# compare with the server's commit time on the same clock), and, after every DOM change,
# whether the action panel and the table agree on where the alias points (the panel's
# "now points to X" step, or its "succeeded", against the table's Current); the longest
# stretch they disagree is kept (performance.now()).
WATCH_LIVE = """(target) => {
    window.sbMovedAt = null;
    window.sbLongestDisagreement = 0;
    let since = null;
    const check = () => {
        const current = document.querySelector("[data-testid=summary-current]");
        const shown = current ? current.textContent.trim() : "";
        if (shown === target && window.sbMovedAt === null) window.sbMovedAt = Date.now();
        let disagree = false;
        document.querySelectorAll("[data-testid=action-panel]").forEach((panel) => {
            const said = (panel.textContent.match(/now points to ([0-9a-f]+)/) || [])[1];
            const done = panel.getAttribute("data-state") === "succeeded";
            if ((said && said !== shown) || (done && !said) || (!said && shown === target)) {
                disagree = true;
            }
        });
        const now = performance.now();
        if (disagree && since === null) since = now;
        if (!disagree && since !== null) {
            window.sbLongestDisagreement = Math.max(window.sbLongestDisagreement, now - since);
            since = null;
        }
    };
    window.sbWatch = new MutationObserver(check);
    window.sbWatch.observe(document.body, {
        subtree: true, childList: true, characterData: true, attributes: true,
    });
}"""


def bench_live(api, var_dir: Path, samples: int, up: subprocess.Popen) -> None:
    """Issue 10 item 8: how soon an open Versions page shows a switch made elsewhere, how
    long its action panel and table disagree, and what an idle page costs. Run with the
    page's live stream ("live") and with the stream blocked, so it polls ("polling")."""
    from playwright.sync_api import sync_playwright

    from dashboard.controlplane.models import App
    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS

    section("Live updates (issue 10, item 8)")
    web = os.environ["SWITCHBOARD_API_URL"]
    name = "live"
    revisions = [deploy_echo(api, var_dir, name, f"v{i}") for i in (1, 2)]
    password = (var_dir / "admin-password").read_text().strip()
    idle_seconds = 20.0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for mode in ("live", "polling"):
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            if mode == "polling":
                page.route("**/events", lambda route: route.abort())
            page.goto(web + "/login/")
            page.get_by_label("Username").fill("admin")
            page.get_by_label("Password").fill(password)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(lambda url: "/login" not in url)
            # Every request the page makes (with when), and the event streams still open.
            asked: list[float] = []
            streams: set = set()
            page.on("request", lambda r, asked=asked: asked.append(time.monotonic()))
            page.on("request", lambda r, s=streams: s.add(r) if r.url.endswith("/events") else 0)
            page.on("requestfinished", lambda r, s=streams: s.discard(r))
            page.on("requestfailed", lambda r, s=streams: s.discard(r))
            page.goto(f"{web}/apps/{name}/versions")
            if mode == "live" and page.locator("[sse-connect]").count():
                page.locator("#versions-live[data-live-open]").wait_for()
            page.wait_for_timeout(2000)  # The refresh made on opening the stream lands.

            # Idle: requests per second over idle_seconds, and the streams held open.
            idle_from = time.monotonic()
            page.wait_for_timeout(idle_seconds * 1000)
            idle_requests = len([t for t in asked if t >= idle_from])
            report(
                f"{mode}: idle Versions page, requests per second",
                {"value": idle_requests / idle_seconds},
                digits=2,
                goal="goal ≤ 1 (or one stream)",
            )
            report(f"{mode}: idle Versions page, open event streams", {"value": len(streams)})

            cli_ms, click_ms, disagree_ms = [], [], []
            current = App.objects.get(name=name).current_revision_id
            for i in range(samples):
                # A switch from the CLI/API: alias commit (server clock) -> badge (page clock).
                target = revisions[0] if str(current) == revisions[1] else revisions[1]
                page.evaluate(WATCH_LIVE, target[:8])
                api.set_rev(name, target, strategy="recreate", reason=f"bench {mode} {i}")
                page.wait_for_function("window.sbMovedAt !== null", timeout=15_000)
                since = App.objects.get(name=name).current_since
                cli_ms.append(page.evaluate("window.sbMovedAt") - since.timestamp() * 1000)
                page.evaluate("window.sbWatch.disconnect()")
                current = target
                # The same from the dashboard's own dialog: its panel and the table.
                target = revisions[0] if current == revisions[1] else revisions[1]
                row = page.locator(f'[data-testid=revision-row][data-revision="{target[:8]}"]')
                row.get_by_test_id("rollback-button").click()
                dialog = page.get_by_test_id("confirm-dialog")
                dialog.get_by_label(re.compile("Recreate")).check()
                page.evaluate(WATCH_LIVE, target[:8])
                dialog.get_by_test_id("confirm-button").click()
                page.wait_for_function("window.sbMovedAt !== null", timeout=15_000)
                page.locator('[data-testid=action-panel][data-state="succeeded"]').first.wait_for(
                    timeout=15_000
                )
                since = App.objects.get(name=name).current_since
                click_ms.append(page.evaluate("window.sbMovedAt") - since.timestamp() * 1000)
                # Let a late panel or table refresh land before reading the longest gap.
                page.wait_for_timeout(1500)
                disagree_ms.append(page.evaluate("window.sbLongestDisagreement"))
                page.evaluate("window.sbWatch.disconnect()")
                for dismiss in page.locator("[data-dismiss]").all():
                    dismiss.click()
                current = target
            report(
                f"{mode}: CLI set-rev (recreate): alias commit → badge moved (ms)",
                percentiles(cli_ms) | {"max": max(cli_ms)},
                goal="goal ≤ 300",
            )
            report(
                f"{mode}: dashboard rollback (recreate): alias commit → badge moved (ms)",
                percentiles(click_ms) | {"max": max(click_ms)},
                goal="goal ≤ 300",
            )
            report(
                f"{mode}: action panel and table disagree, longest (ms)",
                percentiles(disagree_ms) | {"max": max(disagree_ms)},
                goal="goal ≤ 100",
            )
            if mode == "live":
                session = next(c["value"] for c in context.cookies() if c["name"] == "sessionid")
            context.close()
        browser.close()
    stalled_readers(web, session, App.objects.get(name=name).pk, up)


def stalled_readers(web: str, session: str, app_id: int, up: subprocess.Popen) -> None:
    """Clients that open the live stream and never read it: what the web server keeps for
    them while the app changes 50,000 times (its processes' resident memory)."""
    import psutil
    import redis

    from dashboard.controlplane import events

    def web_rss() -> int:
        return sum(
            p.memory_info().rss
            for p in psutil.Process(up.pid).children(recursive=True)
            if "granian" in " ".join(p.cmdline())
        )

    host, port = web.removeprefix("http://").split(":")
    readers = []
    for _ in range(4):  # The per-session limit (SWITCHBOARD_LIVE_MAX_PER_SESSION).
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((host, int(port)))
        request = f"GET /apps/live/events HTTP/1.1\r\nHost: {host}\r\nCookie: sessionid={session}"
        sock.sendall(request.encode() + b"\r\n\r\n")
        readers.append(sock)
    time.sleep(1)
    before = web_rss()
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    message = json.dumps({"app_id": app_id})
    for _ in range(50):
        pipe = client.pipeline(transaction=False)
        for _ in range(1000):
            pipe.publish(events.pages_channel(), message)
        pipe.execute()
    time.sleep(2)
    report(
        "4 streams never read, 50,000 changes: web server memory growth (KiB)",
        {"value": (web_rss() - before) // 1024},
        goal="bounded (coalesced, not queued)",
    )
    for sock in readers:
        sock.close()


# -- recovery (issue 11) ---------------------------------------------------------------


def _child_of_up(up: subprocess.Popen, *words: str) -> int:
    """The pid of the process `up` started whose command line has every word: its group
    leader (a Celery worker's pool processes share its command line)."""
    import psutil

    for proc in psutil.Process(up.pid).children(recursive=True):
        try:
            line = " ".join(proc.cmdline())
            if all(w in line for w in words) and os.getpgid(proc.pid) == proc.pid:
                return proc.pid
        except (psutil.Error, ProcessLookupError):
            continue
    raise SystemExit(f"bench: no child of up runs {words}")


def bench_recovery(api, var_dir: Path, up: subprocess.Popen, samples: int) -> None:
    """Time to recover from each single crash, under `manage.py up` as a user runs it."""
    import httpx

    from dashboard.cli import bundle
    from dashboard.controlplane import runtime_client
    from dashboard.controlplane.models import Operation
    from dashboard.runner_states import RunnerState

    section("Recovery (issue 11)")
    gateway = os.environ["SWITCHBOARD_GATEWAY_URL"]
    web = os.environ["SWITCHBOARD_API_URL"]
    deploy_echo(api, var_dir, "healing", "v1")

    def answers(url: str) -> bool:
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def recover(pid: Callable[[], int], url: str) -> float:
        os.kill(pid(), signal.SIGKILL)
        started = time.perf_counter()
        time.sleep(0.05)  # Let the kill land before the first probe.
        wait_until(lambda: answers(url), 60, f"{url} to answer after the kill")
        return time.perf_counter() - started

    def runtime_pid() -> int:
        return _child_of_up(up, "manage.py", "runtime")

    def web_pid() -> int:
        # Whatever serves the web port: the group leader is its master process.
        import psutil

        port = int(web.rsplit(":", 1)[1])
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
                return os.getpgid(conn.pid)
        raise SystemExit("bench: nothing listens on the web port")

    runtime = [recover(runtime_pid, f"{gateway}/healing/") for _ in range(samples)]
    report(
        "gateway serving again after kill -9 of the runtime (s)",
        percentiles(runtime),
        digits=2,
        goal="goal < 3 s + the target's cold start",
    )
    api_down = [recover(web_pid, f"{web}/login/") for _ in range(min(samples, 3))]
    report(
        "API answering again after kill -9 of the web server (s)", percentiles(api_down), digits=2
    )

    # A deploy whose worker process dies while its runner is in setup(): time from the
    # kill until another worker process has resumed it.
    source = var_dir / "bench-src" / "slow"
    shutil.copytree(ROOT / "examples" / "slow_setup", source, dirs_exist_ok=True)
    app_py = source / "app.py"
    app_py.write_text(re.sub(r"SETUP_SECONDS = .*", "SETUP_SECONDS = 6.0", app_py.read_text()))
    resumed = []
    for i in range(min(samples, 3)):
        data, entrypoint = bundle.build(f"{app_py}::SlowSetup")
        answer = api.deploy(f"crash-{i}", data, entrypoint, strategy="rolling", auth_mode="public")
        op_id = answer["operation"]["id"]

        def in_setup(app: str = f"crash-{i}", op_id: str = op_id) -> str:
            runners = runtime_client.list_runners(app=app)
            if any(r["state"] == RunnerState.SETUP for r in runners):
                return Operation.objects.get(pk=op_id).lease_holder
            return ""

        holder = wait_until(in_setup, 60, "the deploy's runner in setup()")
        os.kill(int(holder.split(":")[1]), signal.SIGKILL)
        started = time.perf_counter()
        wait_until(
            lambda op_id=op_id: any(
                s["message"].startswith("resumed by a worker")
                for s in api.get_operation(op_id)["steps"]
            ),
            120,
            "the deploy to be resumed",
        )
        resumed.append(time.perf_counter() - started)
        finish(api, op_id)
    report(
        "operation resumed after kill -9 of its worker process (s)",
        percentiles(resumed),
        digits=2,
        goal="goal < 5 s",
    )


# -- the record -------------------------------------------------------------------------


def git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def commit_record() -> dict:
    """The code measured: HEAD, and whether the tree had changes on top of it."""
    try:
        return {
            "sha": git("rev-parse", "HEAD"),
            "subject": git("log", "-1", "--format=%s"),
            # Earlier runs' results not committed yet are not a change to the code measured.
            "dirty": bool(git("status", "--porcelain", "--", ".", ":(exclude)bench/results")),
        }
    except (OSError, subprocess.CalledProcessError):  # Not a git checkout, or no git.
        return {"sha": None, "subject": None, "dirty": None}


def machine_record() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    except OSError:  # Not Linux: platform's answer stands.
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "hostname": socket.gethostname(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory / 2**30, 1),
        "python": platform.python_version(),
        "system": platform.platform(),
    }


def save(record: dict) -> Path:
    sha = (record["commit"]["sha"] or "nogit")[:10]
    stamp = datetime.fromisoformat(record["date"]).strftime("%Y%m%dT%H%M%SZ")
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{stamp}-{sha}.json"
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=["platform", "dashboard", "browser", "recovery", "ray"])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    samples = 5 if args.quick else 25
    started = time.monotonic()
    record = {
        "format": FORMAT,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit_record(),
        "machine": machine_record(),
        "run": {
            "only": args.only,
            "quick": args.quick,
            "samples": samples,
            # The machine is shared: its load when the run began says how far to trust it.
            "load_average": [round(x, 2) for x in os.getloadavg()],
        },
        "figures": FIGURES,
    }
    var_dir = Path(tempfile.mkdtemp(prefix="switchboard-bench-"))
    env = prepare_environment(var_dir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    os.environ.setdefault(
        "DJANGO_ALLOW_ASYNC_UNSAFE", "true"
    )  # Playwright's loop shares the thread.
    import django

    django.setup()
    from django.conf import settings

    from dashboard.api_client import ControlApi

    # The connections each process keeps (0: a connection per request), as the run had it.
    record["run"]["db_pool_size"] = settings.DB_POOL_SIZE

    machine, commit = record["machine"], record["commit"]
    print(
        f"Switchboard benchmarks at {(commit['sha'] or 'no commit')[:10]}"
        f"{' (with changes)' if commit['dirty'] else ''} on {machine['hostname']}, "
        f"{machine['cores']} cores; private system in {var_dir}"
    )
    if args.only != "ray":
        proc = start_system(env, var_dir)
        try:
            token = json.loads((var_dir / "config" / "switchboard" / "config.json").read_text())[
                "token"
            ]
            api = ControlApi(env["SWITCHBOARD_API_URL"], token, source="api", timeout=60)
            if args.only in (None, "platform"):
                bench_platform(api, var_dir, samples)
            if args.only in (None, "dashboard"):
                bench_dashboard(samples)
            if args.only in (None, "browser"):
                bench_browser(api, var_dir, max(3, samples // 3))
                bench_live(api, var_dir, max(3, samples // 3), proc)
            if args.only in (None, "recovery"):
                bench_recovery(api, var_dir, proc, max(3, samples // 5))
        finally:
            stop_system(proc)
    if args.only in (None, "ray"):
        bench_ray(samples)
    record["run"]["seconds"] = round(time.monotonic() - started)
    path = save(record)
    print(f"\nFigures saved to {path.relative_to(ROOT)}; compare runs with `make bench-compare`")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
