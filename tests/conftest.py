"""Fixtures shared by the whole suite.

`system` starts the real thing around pytest-django's live server (the control API and
dashboard, in-thread, on the test database): the runtime (gateway + runner supervisor)
and a Celery worker with beat, as subprocesses on the same database and Redis. Nothing
is mocked. Tests that use it need `@pytest.mark.django_db(transaction=True)` so what
they write is committed and visible to those processes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
import redis
from django.conf import settings
from django.core.management.base import CommandError
from django.db import OperationalError
from django.test import TransactionTestCase
from hypothesis import settings as hypothesis_settings

from dashboard.system.supervisor import beat_command, runtime_command, worker_command

ROOT = Path(__file__).resolve().parent.parent

# Hypothesis: in CI the same examples every run (a failure there is reproducible from its
# printed blob); locally a fresh search each run. HYPOTHESIS_PROFILE picks one explicitly.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
hypothesis_settings.register_profile("dev", print_blob=True)
hypothesis_settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") == "true" else "dev")
)

# The suite's own key, not the one settings.py made in the var dir; the fixtures below pass
# it to every process they start, so they all sign and check with it.
settings.SECRET_KEY = "switchboard-test-suite-key-not-for-any-installation-7f3c9a1e52d84b06"


def _flush_until_it_wins_its_deadlock(flush):
    """TransactionTestCase's flush, tried again when PostgreSQL picks its TRUNCATE as the
    victim of a deadlock. The system's processes (the web server finishing a page the
    closed browser asked for, the worker, beat) keep working on the test database while a
    test ends, and a TRUNCATE that waits for one of them can deadlock with it; the other
    side then finishes, and the next try goes through."""

    def fixture_teardown(self) -> None:
        for attempt in range(4):
            try:
                return flush(self)
            except CommandError as exc:
                lost = isinstance(exc.__cause__, OperationalError) and isinstance(
                    exc.__cause__.__cause__, psycopg.errors.DeadlockDetected
                )
                if not lost or attempt == 3:
                    raise

    return fixture_teardown


TransactionTestCase._fixture_teardown = _flush_until_it_wins_its_deadlock(
    TransactionTestCase._fixture_teardown
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    """Poll `predicate` until it returns something truthy; fail the test with `what` otherwise."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - keep polling; report the last error.
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what}" + (f": {last_exc!r}" if last_exc else "")
    )


async def eventually(predicate, timeout: float = 20.0, what: str = "condition"):
    """wait_until inside an event loop: poll `predicate`, letting the loop run between."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.001)
    return value


@dataclass
class System:
    api_url: str
    gateway_url: str
    runtime_url: str
    var_dir: Path
    env: dict[str, str]
    runtime: subprocess.Popen
    worker: subprocess.Popen

    def log(self, name: str) -> str:
        path = self.var_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _db_url() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql":
        missing = "system tests need PostgreSQL: set DATABASE_URL (the README's test command does)"
        # In CI a missing service is a failed run, never a quietly smaller suite.
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    user = db.get("USER") or "postgres"
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}@{host}:{port}/{db['NAME']}"


def _start(cmd: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    log = open(log_path, "ab")  # noqa: SIM115 - the child owns it for its lifetime.
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def _stop(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@pytest.fixture(scope="session")
def redis_client():
    """The suite's own Redis database, emptied once: never one a running system uses.

    `make test` gives the suite database 15 and the namespace switchboard-test, while
    `make demo` (and every installation's default) is database 0 and switchboard.
    """
    client = redis.Redis.from_url(settings.REDIS_URL)
    db = client.connection_pool.connection_kwargs.get("db", 0)
    if db == 0 or settings.REDIS_NAMESPACE == "switchboard":
        pytest.fail(
            f"the suite would share Redis database {db} / namespace {settings.REDIS_NAMESPACE} "
            "with a running Switchboard: run it with `make test` (or set REDIS_URL to another "
            "database and SWITCHBOARD_REDIS_NAMESPACE=switchboard-test)"
        )
    client.flushdb()
    return client


@pytest.fixture(scope="session")
def system(
    django_db_setup, django_db_blocker, live_server, tmp_path_factory, redis_client
) -> System:
    var_dir = tmp_path_factory.mktemp("var")
    # The in-thread live server writes bundles where the runtime and worker read them.
    settings.VAR_DIR = var_dir
    gateway_port, runtime_port = free_port(), free_port()
    settings.GATEWAY_URL = f"http://127.0.0.1:{gateway_port}"
    settings.RUNTIME_URL = f"http://127.0.0.1:{runtime_port}"
    settings.SWITCHBOARD_API_URL = live_server.url
    env = {
        **os.environ,
        "DATABASE_URL": _db_url(),
        "REDIS_URL": settings.REDIS_URL,
        "SWITCHBOARD_VAR_DIR": str(var_dir),
        "SWITCHBOARD_API_URL": live_server.url,
        "SWITCHBOARD_GATEWAY_PORT": str(gateway_port),
        "SWITCHBOARD_RUNTIME_PORT": str(runtime_port),
        "SWITCHBOARD_RUNTIME_URL": settings.RUNTIME_URL,
        "SWITCHBOARD_GATEWAY_URL": settings.GATEWAY_URL,
        "SWITCHBOARD_RUNNER_BACKOFF_STEP": "0.5",
        "SWITCHBOARD_RUNNER_BACKOFF_CAP": "2",
        "SECRET_KEY": settings.SECRET_KEY,
        "PYTHONUNBUFFERED": "1",
    }
    runtime = _start(runtime_command(), env, var_dir / "runtime.log")
    worker = _start(worker_command(), env, var_dir / "worker.log")
    beat = _start(beat_command(var_dir / "beat-schedule"), env, var_dir / "beat.log")
    sys_ = System(
        live_server.url, settings.GATEWAY_URL, settings.RUNTIME_URL, var_dir, env, runtime, worker
    )
    try:
        wait_until(
            lambda: httpx.get(settings.RUNTIME_URL + "/health").status_code == 200,
            what="the runtime's admin API",
            timeout=30,
        )
        from dashboard.celery import app as celery_app

        wait_until(lambda: celery_app.control.ping(timeout=0.5), what="a Celery worker", timeout=60)
        yield sys_
    except AssertionError:
        print(
            "--- runtime.log ---\n",
            sys_.log("runtime"),
            "\n--- worker.log ---\n",
            sys_.log("worker"),
        )
        raise
    finally:
        _stop(beat)
        _stop(worker)
        _stop(runtime)


@pytest.fixture(autouse=True)
def _answers_match_the_document(monkeypatch):
    """Every answer of /api/ that a test gets must match the generated OpenAPI document
    (route, method, status, JSON schema: tests/contract/answers.py), whether it came
    through Django's test client or over HTTP from a live server (httpx, which the typed
    client and the tests use). Only the gateway's answers are not the API's, even on a
    path that starts with /api/ (an app may be named "api")."""
    from django.test import Client

    from tests.contract.answers import problems

    def check(method: str, path: str, status: int, content_type: str, body: bytes) -> None:
        found = problems(method, path, status, content_type, body)
        if found:
            pytest.fail("answer outside the API's document:\n" + "\n".join(found[:10]))

    original = Client.request

    def request(self, **environ):
        response = original(self, **environ)
        check(
            environ.get("REQUEST_METHOD", "GET"),
            environ.get("PATH_INFO", ""),
            response.status_code,
            response.get("Content-Type", ""),
            b"" if response.streaming else response.content,
        )
        return response

    def check_http(response: httpx.Response) -> None:
        url = response.request.url
        if not response.is_stream_consumed or url.port == httpx.URL(settings.GATEWAY_URL).port:
            return
        check(
            response.request.method,
            url.path,
            response.status_code,
            response.headers.get("content-type", ""),
            response.content,
        )

    sync_send, async_send = httpx.Client.send, httpx.AsyncClient.send

    def send(self, request, **kwargs):
        response = sync_send(self, request, **kwargs)
        check_http(response)
        return response

    async def asend(self, request, **kwargs):
        response = await async_send(self, request, **kwargs)
        check_http(response)
        return response

    monkeypatch.setattr(Client, "request", request)
    monkeypatch.setattr(httpx.Client, "send", send)
    monkeypatch.setattr(httpx.AsyncClient, "send", asend)
