"""Fixtures for the control plane's tests: users with each role, their API clients,
bundles built in memory, and apps with revisions written straight to the database.

Tests that do not start the real runtime point the runtime client at a closed port, so
"runtime unavailable" is what really happens, not a mock of it.
"""

from __future__ import annotations

import io
import tarfile
import uuid
from collections.abc import Callable

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from dashboard.controlplane import parameters
from dashboard.controlplane.models import (
    ApiToken,
    App,
    Operation,
    Profile,
    Revision,
    RevisionStatus,
)
from tests.conftest import free_port

FAST_APP = """
from dashboard.sdk import App, endpoint


class Fast(App):
{settings}
    @endpoint("/")
    def hello(self, data: dict) -> dict:
        return {{"hello": "{greeting}"}}
"""


def app_source(greeting: str = "world", **settings) -> str:
    lines = "\n".join(f"    {k} = {v!r}" for k, v in settings.items()) or "    pass"
    return FAST_APP.format(settings=lines, greeting=greeting)


def make_bundle(files: dict[str, str | bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def _isolated(request, settings, tmp_path):
    if request.node.get_closest_marker("system"):
        return
    settings.VAR_DIR = tmp_path / "var"
    settings.VAR_DIR.mkdir()
    # Nothing listens here: the runtime is really unreachable, and one attempt is enough.
    settings.RUNTIME_URL = f"http://127.0.0.1:{free_port()}"
    settings.HTTP_RETRIES = 0


class ApiClient:
    """A Django test client that sends a bearer token and JSON, returning the response."""

    def __init__(self, token: str | None, user=None):
        self.token = token
        self.user = user
        self.client = Client()

    def headers(self, extra: dict | None = None) -> dict:
        headers = {"X-Switchboard-Source": "cli"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return {**headers, **(extra or {})}

    def get(self, path: str, params: dict | None = None, **extra):
        return self.client.get("/api/v1/" + path, params or {}, headers=self.headers(extra))

    def post(self, path: str, body: dict | None = None, **extra):
        return self.client.post(
            "/api/v1/" + path,
            body or {},
            content_type="application/json",
            headers=self.headers(extra),
        )

    def delete(self, path: str, body: dict | None = None, **extra):
        return self.client.delete(
            "/api/v1/" + path,
            body or {},
            content_type="application/json",
            headers=self.headers(extra),
        )

    def deploy(self, app: str, bundle: bytes, entrypoint: str = "app.py::Fast", **fields):
        data = {"entrypoint": entrypoint, "bundle": _upload(bundle)}
        extra = fields.pop("headers", {})
        data.update({k: v for k, v in fields.items()})
        return self.client.post(f"/api/v1/apps/{app}/revisions", data, headers=self.headers(extra))


def _upload(data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("bundle.tar.gz", data, content_type="application/gzip")


@pytest.fixture
def make_user(db) -> Callable[..., object]:
    def make(username: str, role: str = "viewer"):
        user = get_user_model().objects.create_user(username)  # No password: hashing one is slow.
        Profile.objects.create(user=user, role=role)
        return user

    return make


@pytest.fixture
def api_as(make_user) -> Callable[[str], ApiClient]:
    """api_as("deployer") -> an ApiClient with a token of a fresh user of that role."""
    made: dict[str, ApiClient] = {}

    def client(role: str) -> ApiClient:
        if role not in made:
            user = make_user(f"{role}-user", role)
            _, raw = ApiToken.issue(user, "test", role)
            made[role] = ApiClient(raw, user)
        return made[role]

    return client


@pytest.fixture
def viewer(api_as) -> ApiClient:
    return api_as("viewer")


@pytest.fixture
def deployer(api_as) -> ApiClient:
    return api_as("deployer")


@pytest.fixture
def admin(api_as) -> ApiClient:
    return api_as("admin")


def add_revision(
    app: App,
    *,
    status: str = RevisionStatus.DEPLOYED,
    code: dict | None = None,
    settings: dict | None = None,
    rev_id: uuid.UUID | None = None,
    message: str = "",
    created_at=None,
) -> Revision:
    code_settings = parameters.code_values(code or {})
    return Revision.objects.create(
        id=rev_id or uuid.uuid4(),
        app=app,
        status=status,
        entrypoint="app.py::Fast",
        bundle_sha256="0" * 64,
        bundle_size=1,
        code_settings=code_settings,
        settings=settings or code_settings,
        message=message,
        created_at=created_at or timezone.now(),
        deployed_at=timezone.now() if status != RevisionStatus.DEPLOYING else None,
    )


@pytest.fixture
def demo_app(db, make_user):
    """An app with a Current revision (keep_alive tuned to 300 on the alias)."""
    owner = make_user("owner", "deployer")
    app = App.objects.create(name="demo", owner=owner)
    current = add_revision(app, code={"machine_type": "S", "startup_timeout": 30})
    app.current_revision = current
    app.settings = {**current.settings, "keep_alive": 300, "max_concurrency": 5}
    app.save()
    return app


def app_state(name: str = "demo") -> dict:
    """Everything a refused mutation must leave as it was: the alias, the app's settings and
    hold, its revisions with their statuses and pins, and its operations with their steps."""
    app = App.objects.filter(name=name).first()
    if app is None:
        return {"app": None, "operations": Operation.objects.count()}
    return {
        "current": app.current_revision_id,
        "previous": app.previous_revision_id,
        "settings": app.settings,
        "scale_overrides": app.scale_overrides,
        "held": app.held,
        "auth_mode": app.auth_mode,
        "network": app.network,
        "retention": (app.retention_keep, app.retention_enabled),
        "revisions": sorted(
            (str(r.id), r.status, r.pinned) for r in Revision.objects.filter(app=app)
        ),
        "operations": sorted(
            (str(op.id), op.state, op.steps.count(), op.cancel_requested_at is not None)
            for op in Operation.objects.filter(app=app)
        ),
        "all_operations": Operation.objects.count(),
    }


def assert_refused(response, status: int, message: str, before: dict, app: str = "demo") -> dict:
    """A refusal: this status, a message saying precisely why, and nothing changed."""
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert message in error["message"], f"{message!r} not in {error['message']!r}"
    assert app_state(app) == before, "a refused request changed something"
    return error
