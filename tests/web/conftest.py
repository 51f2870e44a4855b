"""Fixtures for the dashboard's view tests: a signed-in client per role, a demo app with
revisions, and a look into the real Redis queue the dashboard's tasks go to.

The runtime is pointed at a closed port unless a test starts the real system, so
"runtime unavailable" is what really happens there, not a mock of it.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import psutil
import pytest
from celery.result import AsyncResult
from django.conf import settings as django_settings
from django.test import Client

from dashboard.celery import app as celery_app
from dashboard.controlplane.models import Role
from dashboard.system.supervisor import web_command
from tests.conftest import ROOT, _db_url, _start, _stop, free_port, wait_until
from tests.web.factories import make_app, make_revision, make_user


@pytest.fixture(autouse=True)
def _runtime_unreachable(request, settings, tmp_path):
    # Real hashing costs seconds per user on a small machine and proves nothing here.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    if "system" in request.fixturenames:
        return
    settings.VAR_DIR = tmp_path / "var"
    settings.VAR_DIR.mkdir()
    settings.RUNTIME_URL = f"http://127.0.0.1:{free_port()}"
    settings.HTTP_RETRIES = 0


@pytest.fixture(scope="session")
def web_server(django_db_setup, redis_client, tmp_path_factory) -> Iterator[str]:
    """The dashboard as `manage.py up` serves it: granian over dashboard/asgi.py, with
    collected (hashed) static files, on the test database and Redis.

    pytest-django's live server is a threaded WSGI server, which cannot stream server-sent
    events (Django collects an async stream whole before a WSGI server sends any of it);
    the live updates of the Versions page are tested here.
    """
    var_dir = tmp_path_factory.mktemp("web")
    env = {
        **os.environ,
        "DATABASE_URL": _db_url(),
        "REDIS_URL": django_settings.REDIS_URL,
        "SECRET_KEY": django_settings.SECRET_KEY,
        "SWITCHBOARD_VAR_DIR": str(var_dir),
        "PYTHONUNBUFFERED": "1",
    }
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    port = free_port()
    proc = _start(web_command(port), env, var_dir / "web.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(url + "/login/").status_code == 200, what="granian", timeout=60
        )
        yield url
    finally:
        _stop(proc)
        # granian's workers may outlive its main process by a moment, each holding a
        # database connection that would keep the test database from being dropped.
        wait_until(lambda: not _group_alive(proc.pid), what="granian's workers to exit")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def signed_in_over_http(web_server: str, role: str = "viewer") -> httpx.Client:
    """An HTTP client holding a real session of a new user (made by Django's force_login,
    read by the granian server from the same database and Redis)."""
    client = Client()
    client.force_login(make_user(role))
    return httpx.Client(
        base_url=web_server, cookies={"sessionid": client.cookies["sessionid"].value}, timeout=10
    )


def connections_held_by_the_server_at(url: str, remote_port: int) -> set[int]:
    """The local ports of every TCP connection to remote_port (PostgreSQL's, Redis's) that
    the server listening at url holds, in any of its processes (granian's workers share
    its process group)."""
    sockets = psutil.net_connections(kind="tcp")
    listener = next(
        s.pid
        for s in sockets
        if s.status == psutil.CONN_LISTEN and s.laddr.port == urlsplit(url).port and s.pid
    )
    group = os.getpgid(listener)
    ports = set()
    for s in sockets:
        if s.status != psutil.CONN_ESTABLISHED or not s.raddr or s.raddr.port != remote_port:
            continue
        try:
            if s.pid and os.getpgid(s.pid) == group:
                ports.add(s.laddr.port)
        except ProcessLookupError:
            continue
    return ports


def _client_for(role: Role) -> Client:
    client = Client()
    client.force_login(make_user(role))
    return client


@pytest.fixture
def viewer(db) -> Client:
    return _client_for(Role.VIEWER)


@pytest.fixture
def deployer(db) -> Client:
    return _client_for(Role.DEPLOYER)


@pytest.fixture
def admin(db) -> Client:
    return _client_for(Role.ADMIN)


@pytest.fixture
def staff_admin(db) -> Client:
    """An admin who is also staff, so the header links to "Users & tokens"."""
    user = make_user(Role.ADMIN)
    user.is_staff = True
    user.save()
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def demo(db):
    """An app with an old Deployed revision, the Current one, and a Failed newer one."""
    app = make_app("demo")
    old = make_revision(app, message="old but good", code_settings={"machine_type": "S"})
    current = make_revision(app, message="the current one", current=True)
    failed = make_revision(app, "failed", message="broken import", error="ImportError: nope")
    return app, old, current, failed


def queued_task_ids(redis_client) -> dict[str, dict]:
    """Task id -> {name, args} of every message waiting in the default Celery queue."""
    found = {}
    for raw in redis_client.lrange("celery", 0, -1):
        message = json.loads(raw)
        body = json.loads(base64.b64decode(message["body"]))
        found[message["headers"]["id"]] = {"name": message["headers"]["task"], "args": body[0]}
    return found


def task_reached_redis(redis_client, key: str) -> bool:
    """True once the task is in the queue, or (if a worker of the live system already
    took it) once the result backend knows it: either way Redis really received it."""
    return (
        key in queued_task_ids(redis_client) or AsyncResult(key, app=celery_app).state != "PENDING"
    )


@pytest.fixture
def empty_queue(redis_client):
    redis_client.delete("celery")
    yield redis_client
    redis_client.delete("celery")
