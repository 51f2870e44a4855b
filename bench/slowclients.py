#!/usr/bin/env python
"""The web server under slow clients: `.venv/bin/python bench/slowclients.py [--quick]`.

Side by side in one run, for the threaded WSGI server `manage.py up` used before
(gunicorn gthread, 2 workers x 4 threads), the one it uses now (web_command: granian
serving dashboard/asgi.py), granian's WSGI interface with as many threads, and, when
uvicorn-worker is installed, uvicorn workers under gunicorn serving the same ASGI app:

- a flood of N slow-header connections (a request line, then one header line a second,
  never the blank line) and, apart, N stalled bodies (a form POST that announces 1000
  bytes and sends one): does an authenticated `GET /api/v1/apps` answer, how fast, and
  when does the server close the slow connections (EOF);
- the plain latency (one client) and throughput (8 clients) of that GET, with all the
  servers running and measured in turn, 2 s each, interleaved.

Everything is on 127.0.0.1, on free ports, in a temporary var dir with its own SQLite
database (what `manage.py up` uses by default) and Redis db 9 (BENCH_REDIS_URL). Each
flood is bounded: N connections, at most STALL_WAIT seconds. Both timeouts are set to
TIMEOUT seconds for the run (the defaults are 30 s), so the run stays short.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dashboard.system.supervisor import web_command  # noqa: E402

TIMEOUT = 5  # seconds: header read timeout and body timeout, for this run.
STALL_WAIT = 20.0  # seconds: how long a flood's connections are watched for EOF.
API_TIMEOUT = 10.0  # seconds: an API call slower than this counts as not answered.
SLOW_HEADER = b"GET /api/v1/apps HTTP/1.1\r\nHost: 127.0.0.1\r\n"
# A CSRF cookie of the right shape makes Django read the form body before refusing it.
STALLED_BODY = (
    b"POST /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Content-Type: application/x-www-form-urlencoded\r\n"
    b"Cookie: csrftoken=abcdefghijklmnopqrstuvwxyzABCDEF\r\n"
    b"Content-Length: 1000\r\n\r\nu"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def servers() -> dict[str, tuple[int, list[str]]]:
    """Each server to compare, on its own free port."""
    python = sys.executable
    found = {
        "gunicorn gthread 2x4 (before)": lambda port: [
            python, "-m", "gunicorn", "dashboard.wsgi", "-b", f"127.0.0.1:{port}",
            "--workers", "2", "--threads", "4", "--timeout", "120",
            "--graceful-timeout", "10", "--access-logfile", "-",  # as `up` ran it
        ],
        "granian ASGI, 4 workers (web_command, now)": web_command,
        "granian WSGI 2x4": lambda port: [
            python, "-m", "granian", "--interface", "wsgi", "dashboard.wsgi:application",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
            "--blocking-threads", "4",
        ],
    }  # fmt: skip
    if importlib.util.find_spec("uvicorn_worker"):
        found["uvicorn workers under gunicorn, 4"] = lambda port: [
            python, "-m", "gunicorn", "dashboard.asgi:application", "-b", f"127.0.0.1:{port}",
            "--workers", "4", "-k", "uvicorn_worker.UvicornWorker",
        ]  # fmt: skip
    ports = {name: free_port() for name in found}
    return {name: (ports[name], command(ports[name])) for name, command in found.items()}


def prepare(var_dir: Path) -> tuple[dict[str, str], str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SWITCHBOARD_", "GRANIAN_")) and k != "DATABASE_URL"
    }
    env.update(
        {
            "SWITCHBOARD_VAR_DIR": str(var_dir),
            "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9"),
            "SWITCHBOARD_WEB_BODY_TIMEOUT": str(TIMEOUT),
            "GRANIAN_HTTP1_HEADER_READ_TIMEOUT": str(TIMEOUT * 1000),
            "PYTHONUNBUFFERED": "1",
        }
    )
    manage = [sys.executable, "manage.py"]
    for step in (["migrate", "-v0"], ["collectstatic", "--no-input", "-v0"]):
        subprocess.run(manage + step, cwd=ROOT, env=env, check=True)
    make_token = (
        "from pathlib import Path; from dashboard.system import accounts; "
        f"user, _ = accounts.ensure_admin(Path({str(var_dir)!r})); "
        f"print(accounts.ensure_token(user, Path({str(var_dir)!r})))"
    )
    out = subprocess.run(
        manage + ["shell", "-c", make_token], cwd=ROOT, env=env, check=True, capture_output=True
    )
    return env, out.stdout.decode().strip().splitlines()[-1]


def start(cmd: list[str], env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/login/", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    stop(proc)
    raise SystemExit(f"{cmd} did not answer within 60 s; see {log}")


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def api_get(port: int, token: str) -> tuple[str, float]:
    started = time.perf_counter()
    try:
        response = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/apps",
            headers={"Authorization": f"Bearer {token}"},
            timeout=API_TIMEOUT,
        )
    except httpx.TimeoutException:
        return f"no answer in {API_TIMEOUT:.0f} s", API_TIMEOUT
    ms = (time.perf_counter() - started) * 1000
    return f"{response.status_code} in {ms:.0f} ms", ms


def flood(port: int, token: str, n: int, opening: bytes, trickle: bytes) -> tuple[str, str]:
    """Open n slow connections, call the API, then watch the slow ones for EOF."""
    conns = []
    for _ in range(n):
        conn = socket.create_connection(("127.0.0.1", port), timeout=5)
        conn.sendall(opening)
        conns.append(conn)
    opened = time.monotonic()
    time.sleep(0.5)  # Let the server hand every connection to a thread or a task.
    answer, _ = api_get(port, token)
    open_conns = {i: c for i, c in enumerate(conns)}
    closed_after: list[float] = []
    while open_conns and time.monotonic() - opened < STALL_WAIT:
        for i, conn in list(open_conns.items()):
            conn.settimeout(0.02)
            try:
                data = conn.recv(4096)
                if data == b"":
                    closed_after.append(time.monotonic() - opened)
                    conn.close()
                    del open_conns[i]
                    continue
            except TimeoutError:
                pass
            except OSError:
                closed_after.append(time.monotonic() - opened)
                del open_conns[i]
                continue
            if trickle:
                with contextlib.suppress(OSError):  # a closed one is seen at the next read
                    conn.sendall(trickle)
        time.sleep(1.0 - min(0.9, 0.02 * len(open_conns)))  # about one line a second
    for conn in open_conns.values():
        conn.close()
    if open_conns:
        closed = f"{len(open_conns)} of {n} still open after {STALL_WAIT:.0f} s"
    else:
        closed = f"all closed by {max(closed_after):.1f} s"
    return answer, closed


def throughput(port: int, token: str, seconds: float, clients: int) -> tuple[float, list[float]]:
    url = f"http://127.0.0.1:{port}/api/v1/apps"
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + seconds

    def client() -> list[float]:
        times = []
        with httpx.Client(headers=headers, timeout=API_TIMEOUT) as http:
            for _ in range(5):  # warm each worker's database connection
                http.get(url)
            while time.monotonic() < deadline:
                started = time.perf_counter()
                http.get(url).raise_for_status()
                times.append((time.perf_counter() - started) * 1000)
        return times

    with ThreadPoolExecutor(clients) as pool:
        results = [f.result() for f in [pool.submit(client) for _ in range(clients)]]
    times = [t for r in results for t in r]
    return len(times) / seconds, times


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N=20 only, shorter load")
    args = parser.parse_args()
    sizes = [20] if args.quick else [20, 50]
    rounds = 2 if args.quick else 5
    with tempfile.TemporaryDirectory(prefix="sb-slowclients-") as tmp:
        var_dir = Path(tmp) / "var"
        env, token = prepare(var_dir)
        running: dict[str, tuple[int, subprocess.Popen]] = {}
        try:
            for name, (port, cmd) in servers().items():
                running[name] = port, start(cmd, env, port, Path(tmp) / f"web-{port}.log")
            # Plain latency and throughput, interleaved (2 s of each server in turn, for
            # each number of clients) so that the machine's noise falls on all alike.
            one: dict[str, list[float]] = {name: [] for name in running}
            eight: dict[str, list[float]] = {name: [] for name in running}
            served: dict[str, int] = dict.fromkeys(running, 0)
            for _ in range(rounds):
                for name, (port, _proc) in running.items():
                    one[name] += throughput(port, token, 2.0, 1)[1]
                    times = throughput(port, token, 2.0, 8)[1]
                    eight[name] += times
                    served[name] += len(times)
            print("\nGET /api/v1/apps with a token", flush=True)
            for name in running:
                print(
                    f"  {name}: 1 client p50 {statistics.median(one[name]):.1f} ms, "
                    f"p90 {pct(one[name], 0.9):.1f}; 8 clients "
                    f"{served[name] / (2.0 * rounds):.0f} req/s, "
                    f"p50 {statistics.median(eight[name]):.1f} ms, p90 {pct(eight[name], 0.9):.1f}",
                    flush=True,
                )
            # The floods, one server at a time: each must be alone to be fair.
            for name, (port, _proc) in running.items():
                print(f"\n{name}", flush=True)
                for n in sizes:
                    for kind, opening, trickle in (
                        ("slow headers", SLOW_HEADER, b"X-Slow: 1\r\n"),
                        ("stalled bodies", STALLED_BODY, b""),
                    ):
                        answer, closed = flood(port, token, n, opening, trickle)
                        print(f"  {n} {kind}: API {answer}; {closed}", flush=True)
        finally:
            for _port, proc in running.values():
                stop(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
