"""The warm spare: one pre-started runner process that the next start takes over.

A spare is a Python process started with `--spare`, in its sandbox (a grandchild of bwrap,
which is the runtime's child); until assigned its output goes to /dev/null, after that to its
runner's log, so its stdout tells them apart.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from django.conf import settings

from tests.conftest import wait_until
from tests.runtime.conftest import deploy_example
from tests.runtime.test_runner_lifecycle import _alive

pytestmark = pytest.mark.django_db(transaction=True)


def _parent(pid: int | str) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[1])


def _spares(runtime_pid: int) -> list[int]:
    """The runtime's unassigned spare processes (the sandboxed Python, not bwrap)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            if b"--spare" not in cmdline or cmdline[0].endswith((b"bwrap", b"setpriv")):
                continue
            # Runtime → bwrap → bwrap's init (PID 1 of the sandbox) → the spare.
            ancestors = [_parent(entry.name)]
            while len(ancestors) < 3 and ancestors[-1] > 1:
                ancestors.append(_parent(ancestors[-1]))
            ours = runtime_pid in ancestors
            stdout = os.readlink(entry / "fd" / "1")
        except (OSError, IndexError):
            continue  # Ended while we looked.
        if ours and stdout == os.devnull:
            found.append(int(entry.name))
    return found


def _the_spare(runtime) -> int:
    spares = wait_until(lambda: _spares(runtime.proc.pid), what="the runtime's warm spare")
    assert len(spares) == 1, spares
    return spares[0]


def _limits(pid: int) -> tuple[int, int]:
    """The address space cap and the niceness of a process."""
    cap = next(
        line.split()[3]
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines()
        if line.startswith("Max address space")
    )
    nice = int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[16])
    return int(cap), nice


def test_a_start_takes_the_spare_which_becomes_that_runner_and_a_new_spare_appears(runtime):
    revision = deploy_example("spared", "slow_endpoint")
    spare = _the_spare(runtime)

    started = runtime.start_runner(revision, machine_type="S")
    ready = runtime.runner(started["id"], wait_for="ready", timeout=30)
    assert ready["state"] == "IDLE"
    assert ready["pid"] == spare
    log_file = runtime.var_dir / "logs" / "spared" / str(revision.id) / f"{started['id']}.log"
    assert os.readlink(f"/proc/{spare}/fd/1") == str(log_file)

    # The machine type's limits, applied by the spare itself when it was assigned.
    machine = settings.MACHINE_TYPES["S"]
    assert _limits(spare) == (machine["memory_mb"] * 1024 * 1024, machine["nice"])

    # Its output goes to its own log, from setup() through teardown().
    assert runtime.gateway("POST", "/spared/", json={"seconds": 0}).json()["slept"] == 0
    runtime.admin("POST", f"/runners/{started['id']}/stop", json={})
    runtime.runner(started["id"], wait_for="gone", timeout=30)
    log = runtime.admin("GET", "/logs", params={"runner": started["id"]}).text
    assert "setup() finished; serving /" in log
    assert "teardown: goodbye" in log

    replacement = _the_spare(runtime)
    assert replacement != spare
    assert replacement not in [r["pid"] for r in runtime.runners()]


def test_two_starts_at_once_both_get_a_working_runner(runtime):
    revision = deploy_example("twice", "fast")
    spare = _the_spare(runtime)
    body = {"count": 2, "key": "", "settings": None}
    started = runtime.admin("POST", f"/revisions/{revision.id}/runners", json=body).json()
    ready = [runtime.runner(r["id"], wait_for="ready", timeout=30) for r in started["runners"]]
    assert [r["state"] for r in ready] == ["IDLE", "IDLE"]
    pids = {r["pid"] for r in ready}
    assert len(pids) == 2 and spare in pids  # One took the spare, the other was spawned.
    machine = settings.MACHINE_TYPES["XS"]
    for runner in ready:
        assert _limits(runner["pid"]) == (machine["memory_mb"] * 1024 * 1024, machine["nice"])
        log = runtime.admin("GET", "/logs", params={"runner": runner["id"]}).text
        assert "setup() finished" in log
    served = {runtime.gateway("POST", "/twice/", json={}).json()["version"] for _ in range(4)}
    assert served == {"fast v1"}


def test_a_start_without_a_live_spare_spawns_its_runner_directly(runtime):
    revision = deploy_example("nospare", "fast")
    spare = _the_spare(runtime)
    os.kill(spare, signal.SIGKILL)
    wait_until(lambda: not _alive(spare), what="the killed spare to be gone")

    started = runtime.start_runner(revision)
    ready = runtime.runner(started["id"], wait_for="ready", timeout=30)
    assert ready["state"] == "IDLE" and ready["pid"] != spare
    assert runtime.gateway("POST", "/nospare/", json={}).json()["version"] == "fast v1"
    assert _the_spare(runtime) != spare  # And the start made a new spare.


def test_a_spare_is_never_listed_as_a_runner(runtime):
    spare = _the_spare(runtime)
    assert runtime.runners() == []
    assert runtime.admin("GET", "/runners", params={"app": "anything"}).json()["runners"] == []
    assert _alive(spare)


def test_stopping_the_runtime_leaves_no_spare_behind(runtime):
    spare = _the_spare(runtime)
    os.kill(runtime.proc.pid, signal.SIGTERM)
    runtime.proc.wait(30)
    assert runtime.proc.returncode == 0
    wait_until(lambda: not _alive(spare), what="the spare to end with the runtime")


def test_a_runtime_killed_outright_takes_its_spare_with_it(runtime):
    spare = _the_spare(runtime)
    os.kill(runtime.proc.pid, signal.SIGKILL)
    runtime.proc.wait(30)
    wait_until(lambda: not _alive(spare), what="the spare to die with the runtime")
