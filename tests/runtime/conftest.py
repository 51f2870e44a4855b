"""A real runtime (`manage.py runtime`) as a subprocess on the test database and Redis.

Tests create App and Revision rows directly and copy an example folder into the
revision's bundle directory; the control API is not involved. Each test gets its own
runtime, so no runner or routing entry leaks from one test into the next.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings

from dashboard.controlplane.events import publish_app_changed
from dashboard.controlplane.models import App, Revision, RevisionStatus
from dashboard.controlplane.runtime_client import admin_secret
from dashboard.runtime.routing import effective_settings
from dashboard.system.supervisor import runtime_command
from tests.conftest import _db_url, _start, _stop, free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLES = ROOT / "examples"
CLASSES = {
    "fast": "Fast",
    "slow_setup": "SlowSetup",
    "broken_setup": "BrokenSetup",
    "slow_endpoint": "SlowEndpoint",
    "demo": "Demo",
}


@dataclass
class Runtime:
    gateway_url: str
    admin_url: str
    var_dir: Path
    proc: subprocess.Popen

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {admin_secret()}"}
        return httpx.request(method, self.admin_url + path, headers=headers, timeout=60, **kwargs)

    def gateway(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("timeout", 60)
        return httpx.request(method, self.gateway_url + path, **kwargs)

    def runners(self, app: str | None = None) -> list[dict]:
        return self.admin("GET", "/runners", params={"app": app} if app else {}).json()["runners"]

    def runner(self, runner_id: str, **params: Any) -> dict:
        return self.admin("GET", f"/runners/{runner_id}", params=params).json()

    def wait_state(self, runner_id: str, *states: str, timeout: float = 30) -> dict:
        return wait_until(
            lambda: (r := self.runner(runner_id))["state"] in states and r,
            timeout=timeout,
            what=f"runner {runner_id} to be {'/'.join(states)}",
        )

    def start_runner(self, revision: Revision, **settings_: Any) -> dict:
        body = {"count": 1, "key": "", "settings": settings_ or None}
        response = self.admin("POST", f"/revisions/{revision.id}/runners", json=body)
        assert response.status_code == 201, response.text
        return response.json()["runners"][0]

    def log(self) -> str:
        return (self.var_dir / "runtime.log").read_text(errors="replace")

    def stop(self) -> None:
        _stop(self.proc)


@pytest.fixture
def runtime_factory(django_db_setup, tmp_path_factory):
    started: list[Runtime] = []
    # A short folder: runner sockets live under it, and Unix socket paths are limited.
    var_dir = Path(tempfile.mkdtemp(prefix="sbrt-"))
    old_var_dir = settings.VAR_DIR
    settings.VAR_DIR = var_dir

    def start(**extra_env: str) -> Runtime:
        gateway_port, admin_port = free_port(), free_port()
        env = {
            **os.environ,
            "DATABASE_URL": _db_url(),
            "REDIS_URL": settings.REDIS_URL,
            "SWITCHBOARD_VAR_DIR": str(var_dir),
            "SWITCHBOARD_GATEWAY_PORT": str(gateway_port),
            "SWITCHBOARD_RUNTIME_PORT": str(admin_port),
            "SWITCHBOARD_RUNNER_BACKOFF_STEP": "0.5",
            "SWITCHBOARD_RUNNER_BACKOFF_CAP": "2",
            "SECRET_KEY": settings.SECRET_KEY,
            "PYTHONUNBUFFERED": "1",
            **extra_env,
        }
        proc = _start(runtime_command(), env, var_dir / "runtime.log")
        rt = Runtime(
            f"http://127.0.0.1:{gateway_port}", f"http://127.0.0.1:{admin_port}", var_dir, proc
        )
        started.append(rt)
        try:
            wait_until(
                lambda: httpx.get(rt.admin_url + "/health").status_code == 200,
                timeout=30,
                what="the runtime's admin API",
            )
        except AssertionError:
            print("--- runtime.log ---\n" + rt.log())
            raise
        return rt

    yield start
    for rt in started:
        if rt.proc.poll() is None:
            os.killpg(rt.proc.pid, signal.SIGTERM)
        _stop(rt.proc)
    settings.VAR_DIR = old_var_dir
    shutil.rmtree(var_dir, ignore_errors=True)


@pytest.fixture
def runtime(runtime_factory) -> Runtime:
    return runtime_factory()


def deploy_example(
    app: App | str,
    example: str,
    *,
    current: bool = True,
    replace: dict[str, str] | None = None,
    status: str = RevisionStatus.DEPLOYED,
    **settings_: Any,
) -> Revision:
    """A Deployed revision of `example` (its source edited by `replace`), made Current."""
    if isinstance(app, str):
        app = App.objects.create(name=app, auth_mode="public")
    values = effective_settings(settings_)
    revision = Revision.objects.create(
        app=app,
        status=status,
        entrypoint=f"app.py::{CLASSES[example]}",
        bundle_sha256="0" * 64,
        bundle_size=0,
        code_settings=values,
        settings=values,
    )
    shutil.copytree(EXAMPLES / example, revision.bundle_dir)
    source = revision.bundle_dir / "app.py"
    text = source.read_text()
    for old, new in (replace or {}).items():
        assert old in text, f"{old!r} is not in examples/{example}/app.py"
        text = text.replace(old, new)
    source.write_text(text)
    if current:
        app.current_revision = revision
        app.settings = values
        app.save()
        publish_app_changed(app.name)  # As the control plane does after moving an alias.
    return revision


def warm_runners(runtime: Runtime, app: str, count: int) -> list[dict]:
    """Wait until `app` has exactly `count` IDLE runners; return them."""

    def idle() -> list[dict] | None:
        runners = [r for r in runtime.runners(app) if r["state"] == "IDLE"]
        return runners if len(runners) == count else None

    return wait_until(idle, what=f"{count} warm runner(s) of {app}")
