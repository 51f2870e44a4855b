"""Fixtures for the invariant tests: the real system of tests/conftest.py, plus the power
to SIGKILL its Celery worker or its runtime and start a replacement with the same command
and environment, as an operator (or systemd) would after a crash.

A replacement outlives the test that started it, so the rest of the session keeps a
working worker and runtime; `processes` stops the replacements when the session ends,
before `system` stops what it started itself (by then already dead, so a no-op).
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from dashboard.api_client import ControlApi
from dashboard.celery import app as celery_app
from dashboard.controlplane import runtime_client
from dashboard.controlplane.models import ApiToken, Profile
from tests.conftest import System, _start, _stop, wait_until
from tests.controlplane.conftest import make_bundle

ROOT = Path(__file__).resolve().parent.parent.parent
SLOW_SETUP = ROOT / "examples" / "slow_setup" / "app.py"
ENTRYPOINT = "app.py::SlowSetup"


@dataclass
class Processes:
    """The worker and runtime processes in use now (the originals or their replacements)."""

    system: System
    worker: subprocess.Popen
    runtime: subprocess.Popen
    replacements: list[subprocess.Popen] = field(default_factory=list)

    def kill_worker(self) -> None:
        """SIGKILL the whole worker: main process, prefork children, embedded beat."""
        _kill_group(self.worker)

    def start_worker(self) -> None:
        self.worker = self._restart(self.worker, "worker")
        wait_until(
            lambda: celery_app.control.ping(timeout=0.5),
            timeout=60,
            what="the replacement Celery worker to answer a ping",
        )

    def kill_runtime(self) -> None:
        """SIGKILL the runtime; its runner processes die with it (PR_SET_PDEATHSIG)."""
        _kill_group(self.runtime)
        wait_until(
            lambda: not _answers(self.system.runtime_url + "/health"),
            what="the killed runtime's admin port to close",
        )

    def start_runtime(self) -> None:
        self.runtime = self._restart(self.runtime, "runtime")
        wait_until(
            lambda: _answers(self.system.runtime_url + "/health"),
            timeout=30,
            what="the replacement runtime's admin API",
        )

    def _restart(self, dead: subprocess.Popen, name: str) -> subprocess.Popen:
        assert dead.poll() is not None, f"the {name} is still running"
        proc = _start(list(dead.args), self.system.env, self.system.var_dir / f"{name}.log")
        self.replacements.append(proc)
        return proc


def _kill_group(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)  # Both were started with start_new_session=True.
    proc.wait(10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="session")
def processes(system: System):
    procs = Processes(system, system.worker, system.runtime)
    yield procs
    for proc in procs.replacements:
        _stop(proc)


@pytest.fixture
def api(system, django_user_model) -> ControlApi:
    """An admin's API client over real HTTP (admins may also delete revisions)."""
    user = django_user_model.objects.create_user("inv-admin")
    Profile.objects.create(user=user, role="admin")
    _, raw = ApiToken.issue(user, "invariants", "admin")
    # One attempt: a 409 is an answer to check, and a 5xx must not be hidden by a retry.
    return ControlApi(system.api_url, raw, source="cli", retries=0, timeout=60)


def slow_setup_source(seconds: float, version: str, **code: object) -> str:
    """examples/slow_setup with its setup() taking `seconds`, answering its `version`, and
    a long keep_alive so an idle runner is not retired while a test looks at it."""
    source = SLOW_SETUP.read_text()
    edits = {
        "SETUP_SECONDS = 3.0": f"SETUP_SECONDS = {seconds!r}\nVERSION = {version!r}",
        'return {"loaded_after": self.loaded_after}': (
            'return {"loaded_after": self.loaded_after, "version": VERSION}'
        ),
        "    startup_timeout = 60": "\n".join(
            f"    {name} = {value!r}" for name, value in {"startup_timeout": 60, **code}.items()
        )
        + "\n    keep_alive = 300",
    }
    for old, new in edits.items():
        assert old in source, f"examples/slow_setup/app.py no longer contains {old!r}"
        source = source.replace(old, new)
    return source


def slow_bundle(seconds: float, version: str, **code: object) -> bytes:
    return make_bundle({"app.py": slow_setup_source(seconds, version, **code)})


def finish(api: ControlApi, op_id: str, timeout: float = 60) -> dict:
    """Wait until the operation finished and return it as the API shows it."""
    return wait_until(
        lambda: (op := api.get_operation(op_id))["finished_at"] and op,
        timeout=timeout,
        what=f"operation {op_id} to finish",
    )


def deploy(api: ControlApi, app: str, bundle: bytes, **kw) -> tuple[dict, dict]:
    """Deploy through the API and wait for the outcome: (operation, revision)."""
    answer = api.deploy(app, bundle, ENTRYPOINT, auth_mode="public", **kw)
    return finish(api, answer["operation"]["id"]), answer["revision"]


def runners_of(revision_id: str) -> list[dict]:
    return runtime_client.list_runners(revision=revision_id)


def served_version(system: System, app: str) -> str:
    response = httpx.get(f"{system.gateway_url}/{app}/", timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["version"]
