"""`manage.py up --demo`: the Quick start's first command, run for real as a newcomer would.

It runs in its own VAR_DIR with its own SQLite database (the zero-set-up default), its own
ports and, as on a machine with no Redis listening, the private Redis `up` starts for
itself, so it shares nothing with the rest of the suite.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, wait_until
from tests.system.conftest import ROOT, Home, Run, processes_with

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    assert shutil.which("redis-server"), "redis-server is needed (.ci/run installs it)"
    return Home(tmp_path_factory.mktemp("up"))


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


def _pid_of(home: Home, *argv: bytes) -> int:
    """The child `up` started with argv: its group's leader, not a pool process it forked."""
    [pid] = [
        pid
        for pid in processes_with(str(home.var_dir))
        if b"\x00".join(argv) in Path(f"/proc/{pid}/cmdline").read_bytes()
        and os.getpgid(pid) == pid
    ]
    return pid


def test_a_crashed_process_is_restarted_and_everything_keeps_working(first_run, home):
    # The runtime, beat and the worker each killed: each comes back, the others go on.
    gateway = f"http://127.0.0.1:{home.gateway_port}/demo/version"

    def crash_the_runtime_then_the_worker(run: Run) -> None:
        os.kill(_pid_of(home, b"manage.py", b"runtime"), signal.SIGKILL)
        wait_until(
            lambda: httpx.get(gateway, timeout=60).status_code == 200,
            what="the gateway to serve again after the runtime was killed",
            timeout=60,
        )
        # Beat, the sweeper's clock, is a supervised process of its own.
        os.kill(_pid_of(home, b"dashboard", b"beat"), signal.SIGKILL)
        os.kill(_pid_of(home, b"dashboard", b"worker"), signal.SIGKILL)
        # An operation goes through the (restarted) worker.
        rolled = home.cli("apps", "rollout", "demo")
        assert rolled.returncode == 0, rolled.stderr

    crashed = Run()
    home.run_up(crashed, crash_the_runtime_then_the_worker)

    assert "runtime exited with status -9; restarting it now" in crashed.output
    assert "worker exited with status -9; restarting it now" in crashed.output
    assert "beat exited with status -9; restarting it now" in crashed.output
    assert crashed.exit_code == 0, crashed.output
    assert crashed.left_behind == set()


def test_a_second_up_refuses_at_once_naming_what_holds_the_var_dir_or_port(first_run, home):
    def start_another(run: Run) -> None:
        same_dir = _up_refuses(home)
        assert same_dir.returncode == 1
        assert "another `manage.py up` (pid " in same_dir.stderr
        assert f"is already running on {home.var_dir}" in same_dir.stderr
        other_dir = _up_refuses(home, SWITCHBOARD_VAR_DIR=str(home.var_dir) + "-second")
        assert other_dir.returncode == 1
        assert f"port {home.web_port} (web) is already in use by pid " in other_dir.stderr
        run.revisions = [same_dir.stdout, other_dir.stdout]

    run = Run()
    home.run_up(run, start_another)

    assert run.revisions == ["", ""]  # Neither started anything, nor said it had.
    assert run.exit_code == 0


def test_up_ran_its_own_redis_on_a_private_socket_and_stopped_it(first_run, home):
    redis_dir = home.var_dir / "redis"

    assert f"starting a private one on {redis_dir / 'redis.sock'}" in first_run.output
    assert stat.S_IMODE(redis_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((redis_dir / "redis.conf").stat().st_mode) == 0o600
    # The password is in the config file only: never printed.
    password = (redis_dir / "redis.conf").read_text().split("requirepass ")[1].split()[0]
    assert password not in first_run.output
    # Stopped with the rest (left_behind covers every process carrying this var dir).
    assert first_run.left_behind == set()


def _up_refuses(home: Home, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "up"],
        cwd=ROOT,
        env={**home.env, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_up_names_an_unreachable_redis_url_and_starts_nothing(home):
    closed = f"redis://127.0.0.1:{free_port()}/3"

    refused = _up_refuses(home, REDIS_URL=closed, SWITCHBOARD_VAR_DIR=str(home.var_dir) + "-r")

    assert refused.returncode == 1
    assert f"Redis at {closed} (REDIS_URL) is unreachable" in refused.stderr
    assert "Starting" not in refused.stdout


def test_up_says_what_to_install_when_redis_server_is_missing(home):
    refused = _up_refuses(home, PATH="/nonexistent", SWITCHBOARD_VAR_DIR=str(home.var_dir) + "-m")

    assert refused.returncode == 1
    assert "redis-server is not installed" in refused.stderr
    assert "apt-get install redis-server" in refused.stderr
    [said] = [line for line in refused.stderr.splitlines() if "redis-server" in line]
    assert said.startswith("CommandError: Redis is not running and redis-server")


def test_up_names_an_unreachable_database_url_without_its_password(home):
    closed = f"postgres://postgres:hunter2@127.0.0.1:{free_port()}/switchboard"

    refused = _up_refuses(home, DATABASE_URL=closed, SWITCHBOARD_VAR_DIR=str(home.var_dir) + "-d")

    assert refused.returncode == 1
    assert "the database at postgres://postgres:***@127.0.0.1:" in refused.stderr
    assert "hunter2" not in refused.stderr + refused.stdout


@pytest.mark.parametrize(
    ("address", "said"),
    [
        ("", "SWITCHBOARD_BACKEND=ray needs RAY_ADDRESS, the head node's host:port"),
        (f"127.0.0.2:{free_port()}", "(RAY_ADDRESS) is unreachable"),
    ],
    ids=["unset", "nothing-listening"],
)
def test_up_with_the_ray_backend_names_a_missing_or_unreachable_cluster_and_starts_nothing(
    home, address, said
):
    refused = _up_refuses(
        home,
        SWITCHBOARD_BACKEND="ray",
        RAY_ADDRESS=address,
        SWITCHBOARD_VAR_DIR=str(home.var_dir) + "-ray",
    )

    assert refused.returncode == 1
    [line] = [line for line in refused.stderr.splitlines() if "RAY_ADDRESS" in line]
    assert line.startswith("CommandError: ") and said in line, refused.stderr
    assert "Starting" not in refused.stdout
