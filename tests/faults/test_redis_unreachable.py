"""With Redis unreachable from the web process, an action is refused fast and truthfully.

Redis is made unreachable by configuration (the web server is pointed at a port nothing
listens on), never by stopping the shared server.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
from django.conf import settings

from dashboard.controlplane.models import ApiToken, Operation, Role
from dashboard.system.supervisor import web_command
from tests.conftest import ROOT, _db_url, _stop, free_port, wait_until
from tests.web.factories import make_app, make_revision, make_user


@pytest.fixture(scope="module")
def web_without_redis(django_db_setup, tmp_path_factory) -> Iterator[str]:
    var_dir = tmp_path_factory.mktemp("no-redis")
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": _db_url(),
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "SWITCHBOARD_VAR_DIR": str(var_dir),
        "SECRET_KEY": settings.SECRET_KEY,
        "PYTHONUNBUFFERED": "1",
    }
    log_path = var_dir / "web.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            web_command(port), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
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


@pytest.mark.django_db(transaction=True)
def test_a_rollout_with_redis_unreachable_is_refused_naming_redis_and_pages_still_render(
    web_without_redis,
):
    app = make_app("no-queue")
    make_revision(app, current=True)
    _, token = ApiToken.issue(make_user(Role.DEPLOYER), "faults", Role.DEPLOYER)
    api = httpx.Client(
        base_url=f"{web_without_redis}/api/v1",
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )

    started = time.monotonic()
    refused = api.post("/apps/no-queue/rollout", json={})
    took = time.monotonic() - started

    assert refused.status_code == 503, refused.text
    error = refused.json()["error"]
    assert error["code"] == "queue_unavailable"
    assert "Redis at redis://127.0.0.1:" in error["message"]
    assert "try again once Redis is back" in error["message"]
    assert "must be restarted" not in error["message"]
    # Nothing half-started: the operation it recorded ended failed with that reason.
    op = Operation.objects.get(app=app)
    assert op.state == "failed" and "did not answer" in op.error
    # Reads still answer: the API without the queue.
    assert api.get("/apps").status_code == 200
    print(f"refused in {took:.2f}s")
