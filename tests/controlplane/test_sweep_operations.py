"""The sweeper (controlplane.sweep_operations) and the executor's lease: no accepted
operation is lost when a worker dies, and none runs past its own deadline."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from dashboard.controlplane import executors, operations
from dashboard.controlplane.models import App, Operation, Revision
from dashboard.controlplane.tasks import sweep_operations
from tests.controlplane.conftest import app_source, make_bundle

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued_deploy(deployer):
    response = deployer.deploy("fresh", make_bundle({"app.py": app_source()}), strategy="recreate")
    return Operation.objects.get(pk=response.json()["operation"]["id"])


def test_a_held_lease_keeps_a_second_worker_out(queued_deploy):
    assert operations.claim(queued_deploy.id) is not None
    assert operations.claim(queued_deploy.id) is None
    assert executors.execute(str(queued_deploy.id)) is None


def test_an_operation_whose_worker_died_is_requeued_and_then_completes(
    queued_deploy, django_capture_on_commit_callbacks
):
    # A worker claimed it and died: its lease is left to lapse.
    operations.claim(queued_deploy.id)
    Operation.objects.filter(pk=queued_deploy.pk).update(
        lease_until=timezone.now() - timedelta(seconds=1)
    )
    assert "enqueued_at" not in queued_deploy.result
    with django_capture_on_commit_callbacks(execute=True):
        counts = sweep_operations()
    assert counts == {"failed": 0, "requeued": 1}
    op = Operation.objects.get()
    # It went back on the Celery queue: submit() notes when the broker took it.
    assert "enqueued_at" in op.result
    assert op.state == "queued"
    assert "lease lapsed; queued again (attempt 2)" in op.steps.last().message

    executors.execute(str(op.id))
    op.refresh_from_db()
    assert op.state == "succeeded", op.error
    assert op.attempts == 2
    assert any("resumed by a worker (attempt 2)" in s.message for s in op.steps.all())
    assert App.objects.get().current_revision.status == "deployed"


def test_an_operation_past_its_deadline_is_failed_with_a_reason(queued_deploy):
    operations.claim(queued_deploy.id)
    queued_deploy.refresh_from_db()
    Operation.objects.filter(pk=queued_deploy.pk).update(
        result={**queued_deploy.result, "deadline": (timezone.now() - timedelta(1)).isoformat()}
    )
    assert sweep_operations() == {"failed": 1, "requeued": 0}
    op = Operation.objects.get()
    assert op.state == "failed"
    assert "exceeded its deadline" in op.error
    # A deploy is never left Deploying.
    assert Revision.objects.get().status == "failed"
    # The executor that still held it finds it ended and stops without changing anything.
    with pytest.raises(operations.Abandoned):
        operations.renew(op)


def test_a_queued_operation_nobody_picked_up_is_queued_again(
    queued_deploy, django_capture_on_commit_callbacks
):
    Operation.objects.filter(pk=queued_deploy.pk).update(
        created_at=timezone.now() - timedelta(minutes=5), result={}
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert sweep_operations()["requeued"] == 1
    assert "enqueued_at" in Operation.objects.get().result  # Back on the Celery queue.


def test_a_fresh_running_operation_is_left_alone(queued_deploy):
    operations.claim(queued_deploy.id)
    assert sweep_operations() == {"failed": 0, "requeued": 0}
    assert Operation.objects.get().state == "running"


def test_an_operation_whose_workers_keep_dying_is_given_up_with_a_reason(queued_deploy):
    Operation.objects.filter(pk=queued_deploy.pk).update(
        attempts=operations.MAX_ATTEMPTS,
        state="running",
        lease_until=timezone.now() - timedelta(seconds=1),
    )
    assert sweep_operations()["failed"] == 1
    assert "giving up" in Operation.objects.get().error


def test_an_operation_no_worker_took_within_the_limit_ends_failed_saying_so(queued_deploy):
    Operation.objects.filter(pk=queued_deploy.pk).update(
        created_at=timezone.now() - operations.QUEUED_LIMIT - timedelta(seconds=1)
    )

    counts = sweep_operations()

    assert counts == {"failed": 1, "requeued": 0}
    op = Operation.objects.get()
    assert op.state == "failed"
    assert op.error.startswith("no worker picked it up in 6")
    assert "is the Celery worker running?" in op.error
    # Its Deploying revision ended with it: nothing is left half-started.
    assert not Revision.objects.filter(status="deploying").exists()
