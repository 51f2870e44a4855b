"""An operation whose worker process dies resumes at once, not after its lease lapses."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest
from django.utils import timezone

from dashboard.celery import app as celery_app
from dashboard.controlplane import runtime_client
from dashboard.controlplane.models import Operation, OperationState
from tests.conftest import wait_until

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]


def test_a_deploy_whose_worker_process_was_killed_resumes_and_succeeds(sb, system):
    source = sb.source("v1", example="slow_setup")
    app_py = Path(source.split("::")[0])
    app_py.write_text(re.sub(r"SETUP_SECONDS = .*", "SETUP_SECONDS = 8.0", app_py.read_text()))
    sb("deploy", source, "--app-name", "crashy", "--auth", "public", "--no-wait")
    op = Operation.objects.get(app__name="crashy")
    holder = wait_until(
        lambda: Operation.objects.get(pk=op.pk).lease_holder,
        what="a worker process to take the deploy",
    )
    wait_until(
        lambda: any(r["state"] == "SETUP" for r in runtime_client.list_runners(app="crashy")),
        timeout=60,
        what="the deploy's runner to be in setup()",
    )

    os.kill(int(holder.split(":")[1]), signal.SIGKILL)
    killed_at = timezone.now()

    resumed = wait_until(
        lambda: op.steps.filter(message__startswith="resumed by a worker").first(),
        timeout=60,
        what="another worker process to resume the deploy",
    )
    done = wait_until(
        lambda: Operation.objects.get(pk=op.pk).finished_at and Operation.objects.get(pk=op.pk),
        timeout=120,
        what="the resumed deploy to finish",
    )
    assert done.state == OperationState.SUCCEEDED, done.error
    assert done.attempts == 2
    assert done.lease_holder != holder
    print(f"resumed {(resumed.at - killed_at).total_seconds():.2f}s after the kill")
    # A successful deploy queues retention work: let the worker finish it before the
    # test's database is emptied, which it would otherwise race.
    wait_until(
        lambda: not any((celery_app.control.inspect(timeout=1).active() or {"": []}).values()),
        timeout=60,
        what="the worker to finish what the deploy queued",
    )
