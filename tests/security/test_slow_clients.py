"""Slow clients against the real web server: the command `manage.py up` runs (web_command).

Issue 9, item 7: a flood of unauthenticated connections that trickle their headers or
stall their body must not stop an authenticated API call, and the server must close such
connections after its timeouts. The server runs as a process on a free port against the
test database, with both timeouts shortened to 2 s so the tests wait on EOF briefly.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
from collections.abc import Iterator

import httpx
import pytest
from django.conf import settings

from dashboard.controlplane import parameters
from dashboard.controlplane.models import ApiToken, App, Operation, Role
from dashboard.system.supervisor import web_command
from tests.conftest import ROOT, _db_url, _stop, free_port, wait_until
from tests.web.factories import make_app, make_user

# More connections than gunicorn's 2 x 4 threads, which such a flood used to hold (whether
# it then blocked the API call depended on which worker accepted it: BENCHMARKS.md).
FLOOD = 40
# Generous bounds, not timings: the server must answer or close well within them.
ANSWER_WITHIN = 30.0
EOF_WITHIN = 30.0

SLOW_HEADER = b"GET /api/v1/apps HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1\r\n"
# Django under ASGI reads every body before a view runs; the CSRF cookie of the right shape
# makes the sign-in form read it under WSGI too, so the same bytes stall either server.
STALLED_BODY = (
    b"POST /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Content-Type: application/x-www-form-urlencoded\r\n"
    b"Cookie: csrftoken=abcdefghijklmnopqrstuvwxyzABCDEF\r\n"
    b"Content-Length: 1000\r\n\r\nu"
)


@pytest.fixture(scope="module")
def web(django_db_setup, tmp_path_factory) -> Iterator[str]:
    var_dir = tmp_path_factory.mktemp("web-var")
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": _db_url(),
        "REDIS_URL": settings.REDIS_URL,
        "SWITCHBOARD_VAR_DIR": str(var_dir),
        "SECRET_KEY": settings.SECRET_KEY,
        "GRANIAN_HTTP1_HEADER_READ_TIMEOUT": "2000",
        "SWITCHBOARD_WEB_BODY_TIMEOUT": "2",
        "PYTHONUNBUFFERED": "1",
    }
    log_path = var_dir / "web.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            web_command(port),
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(f"{url}/login/", timeout=2).status_code == 200,
            timeout=60,
            what=f"the web server (log: {log_path})",
        )
        yield url
    finally:
        _stop(proc)


@pytest.fixture
def token(transactional_db) -> str:
    # Committed (transactional_db), so the server process sees the user, token and app.
    make_app("probe")
    _, raw = ApiToken.issue(make_user(Role.DEPLOYER), "slow clients", Role.DEPLOYER)
    return raw


@contextlib.contextmanager
def opened(url: str, count: int, opening: bytes) -> Iterator[list[socket.socket]]:
    port = int(url.rsplit(":", 1)[1])
    conns: list[socket.socket] = []
    try:
        for _ in range(count):
            conn = socket.create_connection(("127.0.0.1", port), timeout=EOF_WITHIN)
            conn.sendall(opening)
            conns.append(conn)
        yield conns
    finally:
        for conn in conns:
            conn.close()


def read_until_closed(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a blocking read)."""
    received = b""
    while chunk := conn.recv(4096):
        received += chunk
    return received


def api_apps(url: str, token: str) -> httpx.Response:
    return httpx.get(
        f"{url}/api/v1/apps",
        headers={"Authorization": f"Bearer {token}"},
        timeout=ANSWER_WITHIN,
    )


def test_an_authenticated_api_call_answers_during_a_flood_of_slow_headers(web, token):
    with opened(web, FLOOD, SLOW_HEADER):
        response = api_apps(web, token)

    assert response.status_code == 200
    assert [app["name"] for app in response.json()["apps"]] == ["probe"]


def test_an_authenticated_api_call_answers_during_a_flood_of_stalled_bodies(web, token):
    with opened(web, FLOOD, STALLED_BODY):
        response = api_apps(web, token)

    assert response.status_code == 200
    assert [app["name"] for app in response.json()["apps"]] == ["probe"]


def test_the_server_closes_a_connection_whose_headers_stall(web):
    with opened(web, 1, SLOW_HEADER) as [conn]:
        # No answer is owed to a request that never finished its headers: only EOF.
        assert b"200 OK" not in read_until_closed(conn)


def test_a_stalled_body_is_answered_408_and_its_connection_closed(web):
    with opened(web, 1, STALLED_BODY) as [conn]:
        received = read_until_closed(conn)

    assert received.startswith(b"HTTP/1.1 408 ")
    assert received.endswith(b"the request body stalled: nothing arrived for 2s")


def test_a_stalled_api_body_is_answered_408_in_the_api_shape_and_changes_nothing(web, token):
    app = App.objects.get(name="probe")
    stalled_scale = (
        b"POST /api/v1/apps/probe/scale HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + f"Authorization: Bearer {token}\r\n".encode()
        + b'Content-Type: application/json\r\nContent-Length: 40\r\n\r\n{"min_concurrency": 1'
    )
    with opened(web, 1, stalled_scale) as [conn]:
        received = read_until_closed(conn)

    head, body = received.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 408 ")
    assert json.loads(body) == {
        "error": {
            "code": "body_timeout",
            "message": "the request body stalled: nothing arrived for 2s",
            "details": {},
        }
    }
    assert not Operation.objects.exists()
    app.refresh_from_db()
    assert app.settings == parameters.defaults()


def test_a_body_over_the_largest_accepted_size_is_refused_413_unread(web):
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    too_large = STALLED_BODY.replace(
        b"Content-Length: 1000", f"Content-Length: {limit + 1}".encode()
    )
    with opened(web, 1, too_large) as [conn]:
        received = read_until_closed(conn)

    assert received.startswith(b"HTTP/1.1 413 ")
    assert received.endswith(f"the request body is over {limit} bytes".encode())
