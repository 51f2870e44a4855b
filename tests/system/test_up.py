"""`manage.py up --demo`: the Quick start's first command, run for real as a newcomer would.

It runs in its own VAR_DIR with its own SQLite database (the zero-set-up default), its own
Redis server and its own ports, so it shares nothing with the rest of the suite.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / ".venv" / "bin" / "switchboard"
READY = "Switchboard is running."

pytestmark = pytest.mark.system


def processes_with(marker: str) -> set[int]:
    """Live (non-zombie) processes whose environment mentions marker: everything up started."""
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker.encode() not in (proc / "environ").read_bytes():
                continue
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            found.add(int(proc.name))
    return found


@dataclass
class Run:
    output: str = ""
    exit_code: int | None = None
    revisions: list[dict] = field(default_factory=list)
    greeting: dict = field(default_factory=dict)
    children_while_running: set[int] = field(default_factory=set)
    left_behind: set[int] = field(default_factory=set)


class Home:
    """Everything one `up` installation owns: var dir, config dir, Redis and ports."""

    def __init__(self, base: Path, redis_port: int):
        self.var_dir = base / "var"
        self.config_home = base / "config"
        self.web_port, self.gateway_port, self.runtime_port = free_port(), free_port(), free_port()
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SWITCHBOARD_", "CELERY_")) and k != "DATABASE_URL"
        }
        self.env.update(
            {
                "SWITCHBOARD_VAR_DIR": str(self.var_dir),
                "XDG_CONFIG_HOME": str(self.config_home),
                "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
                "SWITCHBOARD_WEB_PORT": str(self.web_port),
                "SWITCHBOARD_GATEWAY_PORT": str(self.gateway_port),
                "SWITCHBOARD_RUNTIME_PORT": str(self.runtime_port),
                "PYTHONUNBUFFERED": "1",
            }
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        # Only XDG_CONFIG_HOME: the CLI must find the URL and token that `up` wrote.
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
        env["XDG_CONFIG_HOME"] = str(self.config_home)
        return subprocess.run(
            [str(CLI), *args], env=env, capture_output=True, text=True, timeout=60
        )

    def run_up(
        self,
        run: Run,
        while_running,
        *,
        stop: bool = True,
        stop_signal: signal.Signals = signal.SIGTERM,
        background: bool = False,
    ) -> None:
        log_path = self.var_dir.parent / f"up-{time.monotonic_ns()}.out"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "manage.py", "up", "--demo"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # What a shell does to a background job (`make demo &`): SIGINT ignored.
                preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
                if background
                else None,
            )
        try:
            wait_until(
                lambda: READY in log_path.read_text() or proc.poll() is not None,
                timeout=240,
                interval=0.5,
                what="`manage.py up --demo` to finish starting",
            )
            assert proc.poll() is None, log_path.read_text()
            while_running(run)
            run.children_while_running = processes_with(str(self.var_dir))
            if stop:
                proc.send_signal(stop_signal)
            run.exit_code = proc.wait(90)
            run.left_behind = processes_with(str(self.var_dir))
        finally:
            if proc.poll() is None:
                # A failed check: let up stop its children before forcing anything.
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)
            for pid in processes_with(str(self.var_dir)):
                # Only processes carrying this test's own VAR_DIR: never anyone else's.
                os.kill(pid, signal.SIGKILL)
            run.output = log_path.read_text()


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    redis_server = shutil.which("redis-server")
    assert redis_server, "redis-server is needed (the README's set-up and .ci/run install it)"
    base = tmp_path_factory.mktemp("up")
    redis_port = free_port()
    redis_proc = subprocess.Popen(
        [
            redis_server,
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(base),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _tcp_open(redis_port), what="the test's own Redis server")
        yield Home(base, redis_port)
    finally:
        redis_proc.terminate()
        redis_proc.wait(10)


def _tcp_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def first_run(home) -> Run:
    def look_around(run: Run) -> None:
        listed = home.cli("apps", "list-rev", "demo", "--json")
        assert listed.returncode == 0, listed.stderr
        run.revisions = json.loads(listed.stdout)["revisions"]
        response = httpx.get(f"http://127.0.0.1:{home.gateway_port}/demo/version", timeout=60)
        run.greeting = {"status": response.status_code, **response.json()}

    run = Run()
    home.run_up(run, look_around)
    return run


def test_up_seeds_the_demo_with_every_badge_ending_on_a_current_deployed_revision(first_run):
    statuses = [r["status"] for r in first_run.revisions]

    assert len(first_run.revisions) >= 3
    assert "failed" in statuses
    newest = first_run.revisions[0]
    assert newest["status"] == "deployed"
    assert newest["current"] is True
    assert sum(r["current"] for r in first_run.revisions) == 1


def test_the_gateway_serves_the_current_demo_revision(first_run):
    assert first_run.greeting == {"status": 200, "version": "v3"}


def test_up_prints_where_to_sign_in_and_how_to_use_the_cli(first_run, home):
    password = (home.var_dir / "admin-password").read_text().strip()

    assert f"http://127.0.0.1:{home.web_port}/" in first_run.output
    assert f"sign in as admin / {password}" in first_run.output
    assert "switchboard apps list-rev demo" in first_run.output


def test_sigterm_stops_every_process_up_started(first_run):
    assert first_run.exit_code == 0, first_run.output
    assert len(first_run.children_while_running) >= 3
    assert first_run.left_behind == set()


def test_a_second_run_reuses_the_database_and_does_not_duplicate_the_demo(first_run, home):
    def count_revisions(run: Run) -> None:
        listed = home.cli("apps", "list-rev", "demo", "--json")
        run.revisions = json.loads(listed.stdout)["revisions"]

    # Started as a background job and stopped with `kill -INT`, as Ctrl-C cannot reach it.
    second = Run()
    home.run_up(second, count_revisions, stop_signal=signal.SIGINT, background=True)

    assert "was seeded before: leaving it as it is" in second.output
    assert [r["id"] for r in second.revisions] == [r["id"] for r in first_run.revisions]
    assert second.exit_code == 0
    assert second.left_behind == set()


def test_when_a_child_dies_up_names_it_and_stops_the_rest(first_run, home):
    def kill_the_runtime(run: Run) -> None:
        [runtime] = [
            pid
            for pid in processes_with(str(home.var_dir))
            if b"manage.py\x00runtime" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        os.kill(runtime, signal.SIGKILL)

    crashed = Run()
    home.run_up(crashed, kill_the_runtime, stop=False)

    assert crashed.exit_code == 1
    assert "runtime exited unexpectedly" in crashed.output
    assert crashed.left_behind == set()
