"""Invariants 1 and 2 and the serialisation rule of DESIGN section 4 under concurrency:
bursts of simultaneous set-rev (both strategies), delete-rev, deploy, rollout and scale
requests at one app, from threads, over real HTTP, against the real worker and runtime.

A set-rev supersedes the operation running on its app (it is cancelled at its next safe
point), so "never interleaved" means: no two operations are active at once, where an
operation stops being active when it finishes or when its cancel is requested.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import Any

import pytest

from dashboard.api_client import ApiError, ControlApi
from dashboard.controlplane.models import App, Operation, Revision
from tests.conftest import wait_until
from tests.invariants.conftest import (
    ENTRYPOINT,
    deploy,
    finish,
    served_version,
    slow_bundle,
)

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]

KINDS = ("set-rev recreate", "set-rev rolling", "delete-rev", "deploy", "scale", "rollout")
BURST = 18
ROUNDS = 3
# Refusals that are the product's rules, each a precise message (DESIGN sections 4 and 9).
RULE_REFUSALS = (
    "is already Current for",
    "is Current for",  # deleting Current
    "is the target of",
    "was just started; try again",  # the busy one finished before it could be named
    "is being deleted by delete-rev operation",  # a set-rev to a revision being deleted
    "a Failed revision can never become Current",  # its deploy was cancelled by a set-rev
)


@dataclass
class Outcome:
    kind: str
    revision: str
    status: int
    body: dict[str, Any] | None = None
    error: ApiError | None = None


def call(api: ControlApi, app: str, kind: str, revision: str, n: int) -> dict:
    if kind == "set-rev recreate":
        return api.set_rev(app, revision, strategy="recreate")
    if kind == "set-rev rolling":
        return api.set_rev(app, revision, strategy="rolling")
    if kind == "delete-rev":
        return api.delete_revision(app, revision, reason="storm")
    if kind == "deploy":
        return api.deploy(app, slow_bundle(0.1, f"d{n}"), ENTRYPOINT, strategy="recreate")
    if kind == "scale":
        return api.scale(app, {"keep_alive": 300 + n})
    return api.rollout(app)


def burst(api: ControlApi, app: str, plan: list[tuple[str, str]]) -> list[Outcome]:
    """Send every request of the plan at the same moment; collect each answer."""
    outcomes: list[Outcome | None] = [None] * len(plan)
    start = threading.Barrier(len(plan))

    def send(i: int, kind: str, revision: str) -> None:
        start.wait()
        try:
            outcomes[i] = Outcome(kind, revision, 200, call(api, app, kind, revision, i))
        except ApiError as exc:
            outcomes[i] = Outcome(kind, revision, exc.status, error=exc)

    threads = [threading.Thread(target=send, args=(i, *p)) for i, p in enumerate(plan)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert all(outcomes), "a request got no answer"
    return outcomes  # type: ignore[return-value]


def assert_answers_are_clear(app: App, outcomes: list[Outcome], deleted: set[str]) -> None:
    for out in outcomes:
        if out.status == 200:
            assert Operation.objects.filter(pk=out.body["operation"]["id"], app=app).exists()
            continue
        message = out.error.message
        if out.status == 409:
            if out.error.code == "operation_in_progress":
                busy = Operation.objects.get(pk=out.error.details["operation"])
                assert busy.app_id == app.pk
                assert str(busy.id) in message and "in progress" in message, message
            else:
                assert any(rule in message for rule in RULE_REFUSALS), message
        elif out.status == 404:
            # It named a revision an accepted delete-rev removed a moment before.
            assert out.kind in ("set-rev recreate", "set-rev rolling", "delete-rev"), out
            assert out.revision in deleted and "has no revision" in message, message
        else:
            raise AssertionError(f"{out.kind} {out.revision}: HTTP {out.status} {message}")


def assert_operations_never_interleaved(app: App) -> list[Operation]:
    """Each operation's active span, from its first recorded step to its finish (or to
    the request to cancel it), ends before the next one's begins: the next could only be
    created once the previous had finished or been cancelled."""
    ops = list(Operation.objects.filter(app=app).prefetch_related("steps"))
    spans = []
    for op in ops:
        assert op.finished_at is not None, f"{op} never finished"
        assert op.state in ("succeeded", "failed", "cancelled"), op.state
        if op.state in ("failed", "cancelled"):
            assert op.error, f"{op} ended {op.state} without a reason"
        if op.state == "cancelled":
            assert op.cancel_requested_at and op.cancel_reason, op
            # Nothing half switched: a cancelled operation never moved the alias.
            assert not any("now points to" in s.message for s in op.steps.all()), op
        end = min(op.finished_at, op.cancel_requested_at or op.finished_at)
        spans.append((min(s.at for s in op.steps.all()), end, op))
    spans.sort(key=lambda span: span[0])
    for (_, end, earlier), (begin, _, later) in zip(spans, spans[1:], strict=False):
        assert end < begin, f"{earlier} (ended {end}) overlaps {later} (began {begin})"
    return [span[2] for span in spans]


def assert_current_never_deleted(ops: list[Operation], alias_before: str) -> None:
    """Replay the alias through the operations in order: no delete-rev ever removed the
    revision the alias pointed to at that moment."""
    alias = alias_before
    for op in ops:
        if op.state != "succeeded":
            continue
        if op.kind == "set_rev" or (op.kind == "deploy" and op.result.get("promoted", True)):
            alias = op.result["revision"]  # A deploy to a held app did not move it.
        elif op.kind == "delete_rev":
            assert op.params["revision"] != alias, f"{op} deleted the Current revision"
            assert not Revision.objects.filter(pk=op.params["revision"]).exists()


def assert_alias_valid(name: str) -> Revision:
    """Invariant 1."""
    app = App.objects.get(name=name)
    current = Revision.objects.get(pk=app.current_revision_id)
    assert current.status == "deployed"
    assert current.app_id == app.pk
    return current


def test_bursts_of_concurrent_mutations_keep_every_invariant(system, api):
    name = "inv-storm"
    for version in ("v1", "v2", "v3", "v4"):
        deploy(api, name, slow_bundle(0.1, version), strategy="recreate")
    rng = random.Random(2024)
    bundles = system.var_dir / "bundles"
    dirs_before = {p.name for p in bundles.iterdir()}
    app = App.objects.get(name=name)
    alias_before = str(app.current_revision_id)
    deleted: set[str] = set()
    answers: dict[int, int] = {}

    for _ in range(ROUNDS):
        existing = [str(pk) for pk in Revision.objects.filter(app=app).values_list("pk", flat=True)]
        plan = [(KINDS[i % len(KINDS)], rng.choice(existing)) for i in range(BURST)]
        outcomes = burst(api, name, plan)
        wait_until(
            lambda: not Operation.objects.filter(app=app, finished_at__isnull=True).exists(),
            timeout=60,
            what="every accepted operation to finish",
        )
        deleted |= {
            op.params["revision"]
            for op in Operation.objects.filter(app=app, kind="delete_rev", state="succeeded")
        }
        assert_answers_are_clear(app, outcomes, deleted)
        for out in outcomes:
            answers[out.status] = answers.get(out.status, 0) + 1
        assert_alias_valid(name)

    # Refused deploys left no bundle behind; deleted revisions took theirs away.
    new_dirs = {p.name for p in bundles.iterdir()} - dirs_before
    assert (
        new_dirs
        == {str(pk) for pk in Revision.objects.filter(app=app).values_list("pk", flat=True)}
        - dirs_before
    )
    ops = assert_operations_never_interleaved(app)
    assert_current_never_deleted(ops, alias_before)
    assert answers.get(200), answers  # something was accepted in every sense...
    current = assert_alias_valid(name)
    # ...and the gateway serves the revision the alias ends on.
    version = served_version(system, name)
    assert f"VERSION = {version!r}" in (current.bundle_dir / "app.py").read_text()


def test_a_mutation_while_one_runs_is_refused_naming_the_one_in_progress(system, api):
    name = "inv-serial"
    _, v1 = deploy(api, name, slow_bundle(4.0, "v1"))  # a setup() of a few seconds
    _, v2 = deploy(api, name, slow_bundle(0.1, "v2"))
    running = api.set_rev(name, v1["id"], strategy="rolling", reason="slow one")["operation"]
    wait_until(
        lambda: Operation.objects.get(pk=running["id"]).state == "running",
        what="the rolling set-rev to be running",
    )
    app = App.objects.get(name=name)
    settings_before = dict(app.settings)
    revisions_before = set(Revision.objects.filter(app=app).values_list("pk", flat=True))

    # (A set-rev is not refused: it supersedes the one in progress; see test_cancellation.)
    attempts = {
        "scale": lambda: api.scale(name, {"keep_alive": 1}),
        "rollout": lambda: api.rollout(name),
        "deploy": lambda: api.deploy(name, slow_bundle(0.1, "v3"), ENTRYPOINT),
        "suspend": lambda: api.suspend(name),
    }
    for what, attempt in attempts.items():
        with pytest.raises(ApiError) as refused:
            attempt()
        error = refused.value
        assert error.status == 409, (what, error.message)
        assert error.code == "operation_in_progress", (what, error.message)
        assert f"set-rev operation {running['id']} is in progress" in error.message, error.message
        assert "one at a time" in error.message
    # Deleting the target of the operation in progress is refused for that very reason.
    with pytest.raises(ApiError) as refused:
        api.delete_revision(name, v1["id"])
    assert refused.value.status == 409
    assert f"is the target of set-rev operation {running['id']}" in refused.value.message

    app.refresh_from_db()
    assert app.settings == settings_before
    assert str(app.current_revision_id) == v2["id"]
    assert set(Revision.objects.filter(app=app).values_list("pk", flat=True)) == revisions_before
    assert list(Operation.objects.filter(app=app, finished_at__isnull=True)) == [
        Operation.objects.get(pk=running["id"])
    ]

    assert finish(api, running["id"])["state"] == "succeeded"
    # Once it finished, the next mutation is accepted.
    assert api.scale(name, {"keep_alive": 1})["operation"]["state"] == "succeeded"
