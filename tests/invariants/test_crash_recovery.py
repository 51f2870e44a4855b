"""Invariant 4 (no accepted operation is lost) and invariants 1 and 3 under crashes, with
real processes: the Celery worker or the runtime is SIGKILLed in the middle of a rolling
deploy or set-rev whose setup() takes a few seconds, and a replacement is started.

One thing is not waited for in real time: an executor's lease (operations.LEASE, 60 s).
When a worker dies, its lease is made to lapse at once by writing lease_until = now, as
if the minute had passed. Everything after that is the product's own recovery: the
sweeper on the new worker's beat re-queues the operation on Redis and the new worker
resumes it against the live runtime.
"""

from __future__ import annotations

import pytest
from django.utils import timezone

from dashboard.controlplane.models import App, Operation, Revision
from tests.conftest import wait_until
from tests.invariants.conftest import (
    ENTRYPOINT,
    deploy,
    finish,
    runners_of,
    served_version,
    slow_bundle,
)

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]

SETUP_SECONDS = 4.0


def current_of(name: str) -> Revision | None:
    return App.objects.select_related("current_revision").get(name=name).current_revision


def wait_for_runner_in_setup(revision_id: str) -> dict:
    return wait_until(
        lambda: next((r for r in runners_of(revision_id) if r["state"] == "SETUP"), None),
        what=f"a runner of {revision_id} to be in setup()",
    )


def assert_alias_invariant(name: str) -> Revision:
    """Invariant 1: the alias points to an existing, Deployed revision of this app."""
    current = current_of(name)
    assert current is not None
    assert current.status == "deployed"
    assert current.app.name == name
    return current


def test_a_rolling_deploy_whose_worker_is_killed_mid_setup_is_resumed_by_a_new_worker(
    system, processes, api
):
    _, v1 = deploy(api, "inv-worker", slow_bundle(0.1, "v1"))
    answer = api.deploy("inv-worker", slow_bundle(SETUP_SECONDS, "v2"), ENTRYPOINT)
    op_id, v2 = answer["operation"]["id"], answer["revision"]["id"]
    runner = wait_for_runner_in_setup(v2)

    processes.kill_worker()
    # With nobody running the operation, the target becomes healthy but the alias stays.
    wait_until(
        lambda: any(r["state"] == "IDLE" for r in runners_of(v2)),
        what="the orphaned target runner to pass its health check",
    )
    assert current_of("inv-worker").id.hex == v1["id"].replace("-", "")
    assert Operation.objects.get(pk=op_id).finished_at is None
    assert served_version(system, "inv-worker") == "v1"

    Operation.objects.filter(pk=op_id).update(lease_until=timezone.now())  # the minute passed
    processes.start_worker()

    op = finish(api, op_id)
    assert op["state"] == "succeeded", (op["error"], [s["message"] for s in op["steps"]])
    messages = [s["message"] for s in op["steps"]]
    assert any("queued again (attempt 2)" in m for m in messages), messages
    assert any("resumed by a worker (attempt 2)" in m for m in messages), messages
    # The resumed executor reused the runner the dead one started (keyed start): one runner.
    assert [r["id"] for r in runners_of(v2)] == [runner["id"]]
    current = assert_alias_invariant("inv-worker")
    assert str(current.id) == v2
    assert served_version(system, "inv-worker") == "v2"


def test_an_operation_accepted_while_no_worker_runs_completes_once_one_starts(
    system, processes, api
):
    _, v1 = deploy(api, "inv-noworker", slow_bundle(0.1, "v1"))
    _, v2 = deploy(api, "inv-noworker", slow_bundle(0.1, "v2"))
    processes.kill_worker()
    answer = api.set_rev("inv-noworker", v1["id"], strategy="rolling", reason="no worker")
    assert answer["operation"]["state"] == "queued"
    assert str(current_of("inv-noworker").id) == v2["id"]

    processes.start_worker()  # The task waited on Redis; the new worker takes it.

    op = finish(api, answer["operation"]["id"])
    assert op["state"] == "succeeded", op["error"]
    assert str(assert_alias_invariant("inv-noworker").id) == v1["id"]
    assert served_version(system, "inv-noworker") == "v1"


@pytest.mark.parametrize("kind", ["set-rev", "deploy"])
def test_killing_the_runtime_mid_rolling_switch_fails_it_with_a_reason_and_the_alias_stays(
    system, processes, api, kind
):
    name = f"inv-runtime-{kind}"
    _, v1 = deploy(api, name, slow_bundle(0.1, "v1"))
    if kind == "set-rev":
        _, v2 = deploy(api, name, slow_bundle(SETUP_SECONDS, "v2"))
        answer = api.set_rev(name, v1["id"], strategy="rolling")
        target, before = v1["id"], v2["id"]
    else:
        answer = api.deploy(name, slow_bundle(SETUP_SECONDS, "v2"), ENTRYPOINT)
        target, before = answer["revision"]["id"], v1["id"]
    wait_for_runner_in_setup(target)

    processes.kill_runtime()
    op = finish(api, answer["operation"]["id"])
    processes.start_runtime()

    assert op["state"] == "failed"
    assert "runtime" in op["error"], op["error"]
    assert op["steps"][-1]["message"] == f"failed: {op['error']}"
    # Invariant 3: the target never passed a health check, so the alias did not move.
    assert str(assert_alias_invariant(name).id) == before
    if kind == "deploy":
        revision = Revision.objects.get(pk=target)
        assert revision.status == "failed"
        assert revision.error == op["error"]
    # The restarted runtime cold-starts the Current revision: the app still answers.
    assert served_version(system, name) == ("v2" if kind == "set-rev" else "v1")
