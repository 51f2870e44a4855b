"""Fixtures for the webhooks' tests: a real HTTP receiver on 127.0.0.1 that records what
it is sent and answers with the status codes a test queues, API clients and signed-in
dashboard clients per role, and an app with two revisions for set-rev.

Retries back off from half a second, capped at two: the `system` fixture's worker takes its
environment from this process, and this module is imported before any fixture runs.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.utils import timezone

from dashboard.controlplane.models import ApiToken, App
from tests.conftest import free_port, wait_until
from tests.controlplane.conftest import ApiClient, add_revision
from tests.web.factories import make_user

os.environ.setdefault("SWITCHBOARD_WEBHOOK_RETRY_DELAY", "0.5")
os.environ.setdefault("SWITCHBOARD_WEBHOOK_RETRY_CAP", "2")

README = Path(__file__).resolve().parents[2] / "README.md"


@dataclass
class Received:
    headers: dict[str, str]  # Names in lower case.
    body: bytes


@dataclass
class Receiver:
    """A threaded http.server on 127.0.0.1 that records every POST.

    `answers` are the status codes of the next requests, in order (then 200). It may be
    created down (`start=False`) and started later on the same port.
    """

    port: int
    answers: list[int] = field(default_factory=list)
    # Sent as Location with a 3xx answer.
    location: str = ""
    received: list[Received] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name.
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.received.append(Received(headers, body))
                code = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(code)
                if receiver.location and 300 <= code < 400:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def wait_for(self, count: int) -> list[Received]:
        wait_until(lambda: len(self.received) >= count, what=f"{count} request(s) at the receiver")
        return self.received


@pytest.fixture
def make_receiver() -> Callable[..., Receiver]:
    made: list[Receiver] = []

    def make(*, start: bool = True, answers: list[int] | None = None) -> Receiver:
        receiver = Receiver(free_port(), list(answers or []))
        if start:
            receiver.start()
        made.append(receiver)
        return receiver

    yield make
    for receiver in made:
        receiver.stop()


@pytest.fixture
def receiver(make_receiver) -> Receiver:
    return make_receiver()


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    # Real hashing costs seconds per user on a small machine and proves nothing here.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def api_as(db) -> Callable[[str], ApiClient]:
    """api_as("admin") -> an ApiClient with a token of a fresh user of that role."""
    made: dict[str, ApiClient] = {}

    def client(role: str) -> ApiClient:
        if role not in made:
            user = make_user(role)
            _, raw = ApiToken.issue(user, "test", role)
            made[role] = ApiClient(raw, user)
        return made[role]

    return client


@pytest.fixture
def web_as(db):
    """web_as("admin") -> a dashboard client signed in as a fresh user of that role."""
    from django.test import Client

    def client(role: str) -> Client:
        signed_in = Client()
        signed_in.force_login(make_user(role))
        return signed_in

    return client


@pytest.fixture
def rolled_forward(db) -> App:
    """An app whose Current revision is the newer of two Deployed ones: a set-rev to the
    older one is a rollback."""
    app = App.objects.create(name="shop")
    older = add_revision(app, message="v1", created_at=timezone.now() - timedelta(hours=1))
    newer = add_revision(app, message="v2")
    app.current_revision, app.settings = newer, dict(newer.settings)
    app.save()
    app.older = older
    return app


def documented_verify() -> Callable[[str, str, bytes], bool]:
    """The `verify` function of the README's "Verifying signatures" snippet, as printed."""
    section = README.read_text().split("**Verifying signatures.**", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own docs.
    return namespace["verify"]
