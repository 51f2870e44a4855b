"""Cancellation and supersede under every interleaving we can provoke (DESIGN sections 4
and 6): bursts of deploys, rolling and recreate set-revs and cancels at one app; a set-rev
superseding a rolling set-rev mid-setup; and a cancel whose worker is killed before it
could act. Nothing is ever half switched: the alias only ever points to a Deployed
revision of the app, moved only after a healthy runner (rolling), never by a cancelled
operation, and every accepted operation ends with a reason.
"""

from __future__ import annotations

import random
import threading

import pytest
from django.db import connection
from django.utils import timezone

from dashboard import runner_states
from dashboard.api_client import ApiError, ControlApi
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
from tests.invariants.test_concurrent_mutations import (
    assert_alias_valid,
    assert_operations_never_interleaved,
)

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]

ROUNDS = 3
BURST = 9
# What a request in the storm may be answered besides acceptance, each a product rule.
CLEAR_REFUSALS = (
    "in progress on app",  # serialised: a deploy while another operation runs
    "is already Current for",
    "there is nothing to cancel",  # the operation ended before the cancel got there
    "was just started; try again",
)


def _active_runners(revision_id: str) -> list[dict]:
    return [r for r in runners_of(revision_id) if r["state"] not in runner_states.GONE]


def _cancel_whatever_runs(api: ControlApi, name: str) -> dict | None:
    running = Operation.objects.filter(app__name=name, finished_at__isnull=True).first()
    if running is None:
        return None
    return api.cancel_operation(name, str(running.id), reason="storm")


def _send(
    api: ControlApi,
    name: str,
    start: threading.Barrier,
    version: str,
    kind: str,
    revision: str | None,
    answers: list[tuple[str, int, str]],
) -> None:
    start.wait()
    try:
        if kind == "deploy":
            # A setup() of a second: long enough to be caught mid-way.
            api.deploy(name, slow_bundle(1.0, version), ENTRYPOINT)
        elif kind == "cancel":
            if _cancel_whatever_runs(api, name) is None:
                answers.append((kind, 204, "nothing ran"))
                return
        else:
            api.set_rev(name, revision, strategy=kind.split()[1])
        answers.append((kind, 200, ""))
    except ApiError as exc:
        answers.append((kind, exc.status, exc.message))
    finally:
        connection.close()  # This thread's own database connection.


def test_storms_of_deploys_set_revs_and_cancels_keep_every_invariant(system, api):
    name = "inv-cancel-storm"
    for version in ("v1", "v2", "v3"):
        deploy(api, name, slow_bundle(0.1, version), strategy="recreate")
    # Without the hold every deploy may go live, which makes more interleavings possible.
    api.hold_policy(name, False)
    rng = random.Random(7)
    app = App.objects.get(name=name)
    answers: list[tuple[str, int, str]] = []

    for round_ in range(ROUNDS):
        deployed = [
            str(pk)
            for pk in Revision.objects.filter(app=app, status="deployed").values_list(
                "pk", flat=True
            )
        ]
        plan = [
            ("deploy", None),
            ("set-rev rolling", rng.choice(deployed)),
            ("cancel", None),
            ("set-rev recreate", rng.choice(deployed)),
            ("deploy", None),
            ("cancel", None),
            ("set-rev rolling", rng.choice(deployed)),
            ("cancel", None),
            ("deploy", None),
        ][:BURST]
        start = threading.Barrier(len(plan))
        threads = [
            threading.Thread(
                target=_send, args=(api, name, start, f"r{round_}-{i}", kind, revision, answers)
            )
            for i, (kind, revision) in enumerate(plan)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        wait_until(
            lambda: not Operation.objects.filter(app=app, finished_at__isnull=True).exists(),
            timeout=120,
            what="every accepted or cancelled operation to end",
        )
        assert_alias_valid(name)

    for kind, status, message in answers:
        if status in (200, 204):
            continue
        assert status == 409, (kind, status, message)
        assert any(rule in message for rule in CLEAR_REFUSALS), (kind, message)
    assert_operations_never_interleaved(app)
    # No revision is left Deploying, and every cancelled deploy's revision is Failed.
    assert not Revision.objects.filter(app=app, status="deploying").exists()
    for op in Operation.objects.filter(app=app, kind="deploy", state="cancelled"):
        revision = Revision.objects.get(pk=op.revision_id)
        assert (revision.status, revision.error) == ("failed", op.error)
        wait_until(
            lambda r=str(revision.id): not _active_runners(r),
            what=f"the runners of cancelled {revision.short_id} to stop",
        )
    assert Operation.objects.filter(app=app, state="cancelled").exists(), answers
    current = assert_alias_valid(name)
    version = served_version(system, name)
    assert f"VERSION = {version!r}" in (current.bundle_dir / "app.py").read_text()


def test_a_set_rev_superseding_a_rolling_set_rev_mid_setup_leaves_one_clean_switch(system, api):
    name = "inv-supersede-switch"
    _, v1 = deploy(api, name, slow_bundle(3000.0, "v1", startup_timeout=3600), strategy="recreate")
    _, v2 = deploy(api, name, slow_bundle(0.1, "v2"))
    _, v3 = deploy(api, name, slow_bundle(0.1, "v3"))
    first = api.set_rev(name, v1["id"], strategy="rolling")["operation"]
    wait_until(
        lambda: any(r["state"] == "SETUP" for r in runners_of(v1["id"])),
        what="the first set-rev's runner to be in setup()",
    )

    second = api.set_rev(name, v2["id"], strategy="rolling", reason="not that one")["operation"]

    assert finish(api, second["id"])["state"] == "succeeded"
    ended = finish(api, first["id"])
    assert ended["state"] == "cancelled"
    assert ended["error"] == f"cancelled: superseded by inv-admin's rollback to {v2['id'][:8]}"
    wait_until(
        lambda: not _active_runners(v1["id"]), what="the superseded set-rev's runner to stop"
    )
    # Invariant 3 for the one switch that happened: a v2 runner was healthy before it.
    app = App.objects.get(name=name)
    assert str(app.current_revision_id) == v2["id"]
    assert str(app.previous_revision_id) == v3["id"]
    assert served_version(system, name) == "v2"


def test_a_cancel_whose_worker_dies_is_carried_out_by_the_next_worker(system, processes, api):
    name = "inv-cancel-crash"
    _, v1 = deploy(api, name, slow_bundle(0.1, "v1"))
    answer = api.deploy(name, slow_bundle(3000.0, "v2", startup_timeout=3600), ENTRYPOINT)
    op_id, v2 = answer["operation"]["id"], answer["revision"]["id"]
    wait_until(
        lambda: any(r["state"] == "SETUP" for r in runners_of(v2)),
        what="the deploy's runner to be in setup()",
    )
    processes.kill_worker()

    # Accepted while no executor can act on it: recorded, and the app is free at once.
    api.cancel_operation(name, op_id, reason="worker is gone")
    pending = Operation.objects.get(pk=op_id)
    assert pending.finished_at is None and pending.cancel_requested_at is not None
    Operation.objects.filter(pk=op_id).update(lease_until=timezone.now())  # the minute passed
    processes.start_worker()

    ended = finish(api, op_id, timeout=120)
    assert ended["state"] == "cancelled"
    assert ended["error"] == "cancelled: cancelled by inv-admin: worker is gone"
    assert Revision.objects.get(pk=v2).status == "failed"
    wait_until(lambda: not _active_runners(v2), what="the cancelled deploy's runners to stop")
    assert str(assert_alias_valid(name).id) == v1["id"]
    assert served_version(system, name) == "v1"
