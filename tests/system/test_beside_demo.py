"""`make test` beside a running `make demo`: the demo keeps its queue, sessions and routing.

The demo here runs on the shared Redis server with an installation's default namespace,
in a database of its own (a real demo's database 0 is never touched by the suite, this
test included). While it runs, the parts of the suite that flush their Redis database,
publish on change channels and drop Redis clients run as `make test` runs them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import httpx
import pytest
import redis
from django.conf import settings

from tests.conftest import wait_until
from tests.system.conftest import ROOT, Home, Run

# It starts a whole `up --demo` and runs part of the suite beside it: more than the
# default per-test limit on a loaded machine.
pytestmark = [pytest.mark.system, pytest.mark.timeout(900)]

DEMO_REDIS_DB = 13
SUITE_REDIS_DB = 14  # Not the running suite's own: the inner run flushes its database.
SUITE_PART = ["tests/runtime/test_routing.py", "tests/web/test_sessions.py"]


def _sign_in(web: str, password: str) -> httpx.Client:
    client = httpx.Client(base_url=web, timeout=30)
    page = client.get("/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    signed_in = client.post(
        "/login/", data={"username": "admin", "password": password, "csrfmiddlewaretoken": token}
    )
    assert signed_in.status_code == 302, signed_in.text
    return client


def _run_suite_part() -> subprocess.CompletedProcess:
    env = dict(os.environ)
    server = settings.REDIS_URL.rsplit("/", 1)[0]
    env["REDIS_URL"] = f"{server}/{SUITE_REDIS_DB}"
    db = settings.DATABASES["default"]
    env["DATABASE_URL"] = (
        f"postgres://{db.get('USER') or 'postgres'}@{db.get('HOST') or '127.0.0.1'}:"
        f"{db.get('PORT') or 5432}/beside_demo"
    )
    return subprocess.run(
        [sys.executable, "-m", "pytest", *SUITE_PART, "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_running_demo_keeps_its_queue_sessions_and_routing_while_the_suite_runs(
    tmp_path_factory,
):
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("the suite's part runs on PostgreSQL, as `make test` runs it")
    server = settings.REDIS_URL.rsplit("/", 1)[0]
    home = Home(tmp_path_factory.mktemp("demo"), redis_url=f"{server}/{DEMO_REDIS_DB}")
    demo_redis = redis.Redis.from_url(home.env["REDIS_URL"])
    demo_redis.flushdb()  # Left from an earlier run of this test only: its own database.
    web = f"http://127.0.0.1:{home.web_port}"
    gateway = f"http://127.0.0.1:{home.gateway_port}"

    def beside_the_suite(run: Run) -> None:
        browser = _sign_in(web, (home.var_dir / "admin-password").read_text().strip())
        assert browser.get("/").status_code == 200
        queue_keys = set(demo_redis.keys("_kombu.binding.*"))
        assert queue_keys, "the demo's worker declared its queues"

        suite = _run_suite_part()
        assert suite.returncode == 0, suite.stdout[-3000:] + suite.stderr[-3000:]

        # Sessions: still signed in, without signing in again.
        page = browser.get("/")
        assert page.status_code == 200 and "Sign in" not in page.text
        # Routing: the gateway still serves the demo's Current revision.
        assert httpx.get(f"{gateway}/demo/version", timeout=60).json() == {"version": "v3"}
        # The queue: its bindings are intact and an operation still goes through the worker.
        assert queue_keys <= set(demo_redis.keys("_kombu.binding.*"))
        listed = home.cli("apps", "list-rev", "demo", "--json")
        oldest = json.loads(listed.stdout)["revisions"][-1]
        switched = home.cli("apps", "set-rev", "demo", oldest["short_id"], "--strategy", "recreate")
        assert switched.returncode == 0, switched.stderr
        wait_until(
            lambda: httpx.get(f"{gateway}/demo/version", timeout=60).json()["version"] == "v1",
            what="the gateway to route the demo's oldest revision",
            timeout=60,
        )

    run = Run()
    home.run_up(run, beside_the_suite)
    assert run.output and "Switchboard is running." in run.output
    demo_redis.flushdb()
