"""The CLI follows an operation through an API outage, and explains a long silence."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import subprocess
import threading
from urllib.parse import urlsplit

import pytest

from dashboard.controlplane.models import Operation, OperationState
from tests.cli.conftest import CLI
from tests.conftest import free_port, wait_until

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]


class Outage:
    """A TCP relay in front of the control API that can be cut off and restored.

    Cutting it closes the listening socket and every open connection, as a restarting
    API server or a dropped network does: new connections are refused until restored.
    """

    def __init__(self, target: str):
        parts = urlsplit(target)
        self.target = (parts.hostname, parts.port)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.conns: list[socket.socket] = []
        self.listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def cut(self) -> None:
        # shutdown() first: a bare close() leaves the thread blocked in accept() holding
        # the port open, so connections would still be taken.
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)  # Wakes the pump blocked on it, as above.
            conn.close()
        self.conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # Cut.
            upstream = socket.create_connection(self.target)
            self.conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(a, selectors.EVENT_READ, b)
            sel.register(b, selectors.EVENT_READ, a)
            try:
                while True:
                    for key, _ in sel.select():
                        data = key.fileobj.recv(65536)
                        if not data:
                            return
                        key.data.sendall(data)
            except OSError:
                return
            finally:
                a.close()
                b.close()


class Lines:
    """A process's stderr and stdout, read as they come, for waiting on a line."""

    def __init__(self, proc: subprocess.Popen):
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, into in ((proc.stdout, self.out), (proc.stderr, self.err)):
            threading.Thread(target=lambda s=stream, i=into: i.extend(s), daemon=True).start()

    def count(self, text: str) -> int:
        return sum(text in line for line in self.err + self.out)


def test_the_cli_follows_an_operation_across_an_api_outage_and_reports_its_end(sb, system):
    api = Outage(system.api_url)
    source = sb.source("v1", example="slow_setup")
    env = {**sb.env, "SWITCHBOARD_URL": api.url}
    proc = subprocess.Popen(
        [str(CLI), "deploy", source, "--app-name", "outage", "--auth", "public"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = Lines(proc)
    try:
        # A step of the operation printed: the API accepted the deploy and the CLI follows it.
        wait_until(
            lambda: lines.count("bundle received"), timeout=60, what="the deploy's first step"
        )
        api.cut()
        wait_until(
            lambda: lines.count("still following operation") >= 3,
            timeout=60,
            what="the CLI to say it keeps following through the outage",
        )
        wait_until(
            lambda: Operation.objects.get(app__name="outage").state == OperationState.SUCCEEDED,
            timeout=120,
            what="the deploy to succeed while the API is unreachable for the CLI",
        )
        api.restore()
        assert proc.wait(60) == 0, "".join(lines.out + lines.err)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "is deployed and Current" in "".join(lines.out)
    assert "control API unavailable" in "".join(lines.err)


def test_a_queued_operation_says_after_10s_that_no_worker_took_it_and_timeout_stops(sb, system):
    sb.deploy("stalled", "v1")
    os.kill(system.worker.pid, signal.SIGSTOP)
    try:
        stuck = sb("apps", "rollout", "stalled", "--timeout", "12", ok=False)
    finally:
        os.kill(system.worker.pid, signal.SIGCONT)

    assert stuck.returncode == 1
    assert "still queued after 1" in stuck.stderr
    assert "waiting for a worker to pick it up; is the Celery worker running?" in stuck.stderr
    assert "stopped following operation" in stuck.stderr and "after 12s" in stuck.stderr
    assert "it is still queued on the server" in stuck.stderr
    op = Operation.objects.filter(app__name="stalled").latest("created_at")
    # Not lost: once the worker runs again the rollout goes through.
    wait_until(
        lambda: Operation.objects.get(pk=op.pk).state == OperationState.SUCCEEDED,
        timeout=120,
        what="the rollout to run once the worker is back",
    )
