"""The controlplane.execute_operation task through a real Redis broker."""

from __future__ import annotations

import pytest

from dashboard.celery import app as celery_app
from dashboard.controlplane.models import App, Operation, Revision
from dashboard.controlplane.tasks import execute_operation
from tests.conftest import free_port
from tests.controlplane.conftest import app_source, make_bundle


def test_the_tasks_have_their_explicit_names():
    assert celery_app.tasks["controlplane.execute_operation"].name == execute_operation.name
    assert "controlplane.sweep_operations" in celery_app.tasks


@pytest.mark.django_db
def test_the_task_runs_the_operation_it_is_given(deployer):
    response = deployer.deploy("fresh", make_bundle({"app.py": app_source()}), strategy="recreate")
    op_id = response.json()["operation"]["id"]
    assert execute_operation.run(op_id) == "succeeded"
    assert App.objects.get().current_revision.status == "deployed"
    # Run again (a redelivery): nothing left to do, nothing done twice.
    assert execute_operation.run(op_id) is None
    assert Operation.objects.get().steps.filter(message__startswith="alias").count() == 1


@pytest.fixture
def broker_down():
    """Point Celery at a port where no Redis listens, then put it back."""
    conf = celery_app.conf
    saved = conf.broker_url
    conf.broker_url = f"redis://127.0.0.1:{free_port()}/0"
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    yield
    conf.broker_url = saved
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@pytest.mark.django_db(transaction=True)
def test_with_the_queue_down_a_deploy_answers_503_and_nothing_is_half_done(deployer, broker_down):
    response = deployer.deploy("fresh", make_bundle({"app.py": app_source()}))
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "queue_unavailable"
    assert error["message"].startswith("task queue unavailable")
    op = Operation.objects.get(pk=error["details"]["operation"])
    assert op.state == "failed"
    assert op.is_finished
    # The revision never half-deploys: it is Failed with the reason, and the alias is untouched.
    assert Revision.objects.get().status == "failed"
    assert App.objects.get().current_revision is None
