"""End to end through the real system: control API (live server), Celery worker, runtime
with runner processes and the gateway. Deploy, set-rev and rollout with each strategy,
delete-rev, and bounded load tests (20 concurrent clients for 15 s on loopback) showing
that a rolling set-rev and a graceful rollout fail no request, and that a force rollout
fails no more requests than were in flight."""

from __future__ import annotations

import threading
from collections import Counter

import httpx
import pytest

from dashboard import runner_states
from dashboard.api_client import ApiError, ControlApi
from dashboard.controlplane.models import ApiToken, Profile, Revision
from tests.conftest import wait_until
from tests.controlplane.conftest import make_bundle

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]

CLIENTS = 20
# Answers the load must get before and after the operation, so the operation runs under
# steady traffic and what follows it is seen under traffic too (counted, not timed).
ANSWERS_AROUND = 40

SOURCE = """
import time

from dashboard.sdk import App, endpoint


class Versioned(App):
    keep_alive = 300
    max_concurrency = 4
    max_multiplexing = {multiplexing}
    startup_timeout = 60

    def setup(self) -> None:
{setup}

    @endpoint("/")
    def hello(self, data: dict) -> dict:
        time.sleep(float(data.get("sleep", 0)))
        return {{"version": "{version}"}}
"""


def bundle(version: str, *, setup: str = "pass", multiplexing: int = 4) -> bytes:
    source = SOURCE.format(version=version, setup="        " + setup, multiplexing=multiplexing)
    return make_bundle({"app.py": source})


@pytest.fixture
def api(system, django_user_model) -> ControlApi:
    user = django_user_model.objects.create_user("e2e")
    Profile.objects.create(user=user, role="admin")
    _, raw = ApiToken.issue(user, "e2e", "admin")
    return ControlApi(system.api_url, raw, source="cli", retries=1)


def finish(api: ControlApi, answer: dict, timeout: float = 120) -> dict:
    op_id = answer["operation"]["id"]
    return wait_until(
        lambda: (op := api.get_operation(op_id))["finished_at"] and op,
        timeout=timeout,
        what=f"operation {op_id} to finish",
    )


def deploy(api: ControlApi, app: str, data: bytes, **kw) -> tuple[dict, dict]:
    answer = api.deploy(app, data, "app.py::Versioned", auth_mode="public", **kw)
    return finish(api, answer), answer["revision"]


def version(system, app: str) -> str:
    response = httpx.get(f"{system.gateway_url}/{app}/", timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["version"]


class Load:
    """CLIENTS threads calling the gateway in a loop, counting outcomes."""

    def __init__(self, url: str, sleep: float = 0.05):
        self.url, self.sleep = url, sleep
        self.outcomes: Counter[str] = Counter()
        self.failures: list[str] = []
        self.versions: Counter[str] = Counter()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.client) for _ in range(CLIENTS)]

    def client(self) -> None:
        with httpx.Client(timeout=60) as http:
            while not self.stop.is_set():
                try:
                    response = http.get(self.url, params={"sleep": self.sleep})
                    ok = response.status_code == 200
                    detail = f"{response.status_code} {response.text[:120]}"
                    got = response.json().get("version") if ok else None
                except httpx.HTTPError as exc:
                    ok, detail, got = False, repr(exc), None
                with self.lock:
                    self.outcomes["ok" if ok else "failed"] += 1
                    if ok:
                        self.versions[got] += 1
                    else:
                        self.failures.append(detail)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def answered(self, more: int = ANSWERS_AROUND) -> None:
        """Wait until the load got `more` answers than it has now (whatever they were)."""
        with self.lock:
            target = sum(self.outcomes.values()) + more
        wait_until(
            lambda: sum(self.outcomes.values()) >= target,
            timeout=120,
            what=f"{more} more answers to the load",
        )

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(90)


def test_deploy_set_rev_rollout_and_delete_work_end_to_end(system, api):
    op, v1 = deploy(api, "e2e", bundle("v1"))
    assert op["state"] == "succeeded", op
    messages = [s["message"] for s in op["steps"]]
    ready = next(i for i, m in enumerate(messages) if m.endswith(" is IDLE"))
    moved = next(i for i, m in enumerate(messages) if "alias e2e now points" in m)
    # Invariant 3: a rolling switch moves the alias only after a runner passed its health check.
    assert ready < moved
    assert version(system, "e2e") == "v1"

    op, v2 = deploy(api, "e2e", bundle("v2"), strategy="recreate", message="second")
    assert op["state"] == "succeeded", op
    assert version(system, "e2e") == "v2"

    op = finish(api, api.set_rev("e2e", v1["short_id"], strategy="rolling", reason="rollback"))
    assert op["state"] == "succeeded", op
    assert version(system, "e2e") == "v1"

    op = api.set_rev("e2e", v2["id"], strategy="recreate")["operation"]
    assert op["state"] == "succeeded"
    assert version(system, "e2e") == "v2"

    before = {r["id"] for r in api.runners("e2e") if r["state"] in runner_states.READY}
    assert before
    op = finish(api, api.rollout("e2e"))
    assert op["state"] == "succeeded", op
    after = {r["id"] for r in api.runners("e2e") if r["state"] in runner_states.READY}
    assert after and not (after & before)
    assert version(system, "e2e") == "v2"

    op = finish(api, api.rollout("e2e", force=True))
    assert op["state"] == "succeeded", op
    assert version(system, "e2e") == "v2"

    with pytest.raises(ApiError) as refused:
        api.delete_revision("e2e", v2["short_id"])
    assert refused.value.status == 409
    op = finish(api, api.delete_revision("e2e", v1["short_id"], reason="old"))
    assert op["state"] == "succeeded", (op["error"], op["steps"])
    assert not Revision.objects.filter(pk=v1["id"]).exists()
    assert not (system.var_dir / "bundles" / v1["id"]).exists()
    assert op["params"]["revision"] == v1["id"] and op["requester"] == "e2e"
    assert isinstance(api.logs("e2e", revision=v2["id"]), str)
    assert version(system, "e2e") == "v2"


def test_a_rolling_deploy_whose_setup_raises_fails_and_the_old_revision_keeps_serving(system, api):
    deploy(api, "e2e-broken", bundle("good"))
    op, broken = deploy(
        api, "e2e-broken", bundle("bad", setup="raise RuntimeError('weights missing')")
    )
    assert op["state"] == "failed"
    revision = api.get_revision("e2e-broken", broken["id"])
    assert revision["status"] == "failed"
    assert "weights missing" in revision["error"] + revision["log_tail"]
    assert api.get_app("e2e-broken")["current_revision"]["id"] != broken["id"]
    assert version(system, "e2e-broken") == "good"
    with pytest.raises(ApiError) as refused:
        api.set_rev("e2e-broken", broken["id"])
    assert refused.value.status == 409


def test_a_rolling_set_rev_under_load_fails_no_request(system, api):
    _, v1 = deploy(api, "e2e-load", bundle("v1"))
    _, v2 = deploy(api, "e2e-load", bundle("v2"))
    with Load(f"{system.gateway_url}/e2e-load/") as load:
        load.answered()
        op = finish(api, api.set_rev("e2e-load", v1["id"], strategy="rolling"))
        load.answered()
    assert op["state"] == "succeeded", op
    assert load.outcomes["failed"] == 0, load.failures[:5]
    assert load.versions["v1"] > 0 and load.versions["v2"] > 0


def test_a_graceful_rollout_under_load_fails_no_request(system, api):
    deploy(api, "e2e-roll", bundle("v1"))
    with Load(f"{system.gateway_url}/e2e-roll/") as load:
        load.answered()
        op = finish(api, api.rollout("e2e-roll"))
        load.answered()
    assert op["state"] == "succeeded", op
    assert load.outcomes["ok"] > 0
    assert load.outcomes["failed"] == 0, load.failures[:5]


def test_a_force_rollout_fails_no_more_requests_than_were_in_flight(system, api):
    multiplexing = 2
    deploy(api, "e2e-force", bundle("v1", multiplexing=multiplexing))
    with Load(f"{system.gateway_url}/e2e-force/", sleep=0.2) as load:
        load.answered()
        op = finish(api, api.rollout("e2e-force", force=True))
        load.answered()
    assert op["state"] == "succeeded", op
    killed = len(op["result"].get("old_runners", []))
    # At most max_multiplexing requests were in flight on each killed runner.
    assert load.outcomes["failed"] <= killed * multiplexing, load.failures[:5]
    assert load.outcomes["ok"] > 0
