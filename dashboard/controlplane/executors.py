"""What each long operation does, run by the Celery worker (see tasks.py).

Each executor may run more than once for one operation (a redelivered task after a
worker crash), so each first checks what was already done: runners are started with a
key derived from the operation id, the alias switch is skipped if it already happened,
and the list of runners to replace is remembered in the operation's result.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from collections.abc import Callable
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings as conf
from django.db import transaction
from django.utils import timezone

from dashboard import runner_states
from dashboard.controlplane import (
    bundles,
    events,
    operations,
    parameters,
    refusals,
    retention,
    runtime_client,
)
from dashboard.controlplane.models import (
    App,
    Operation,
    OperationKind,
    Revision,
    RevisionStatus,
    short_id,
)
from dashboard.runtime import sandbox

log = logging.getLogger(__name__)

# How long one long-poll of a runner may last: each return is a safe point where a
# cancellation is noticed, so a rollback's supersede takes effect within about this.
POLL_CHUNK = 1.0
IMPORT_TIMEOUT = 45.0  # Well within operations.LEASE, which is not renewed meanwhile.
# What a failed import check may bring back: the error line and the tail of its traceback
# or of its stderr, no more (the code chooses that text).
IMPORT_ERROR_CHARS = 500
IMPORT_TAIL_CHARS = 2000
STARTUP_SLACK = 30.0  # Process start and health check on top of the code's startup_timeout.
LOG_TAIL_LINES = 60


class Failed(Exception):
    """The operation cannot complete; the message says why, for the user."""


# -- shared steps -------------------------------------------------------------------


def sync_runtime(op: Operation, app_name: str, state: dict[str, Any] | None = None) -> None:
    """Tell the runtime now (best effort): the pub/sub message already told the gateway.

    `state` is what move_alias returned; with it the runtime reads nothing from the
    database (see runtime_client.sync_app).
    """
    try:
        runtime_client.sync_app(app_name, state)
    except runtime_client.FAILURES as exc:
        operations.step(
            op,
            f"runtime could not be told of the change ({runtime_client.error(exc)}); it reloads every app when it "
            "reconnects",
        )
        return
    operations.step(op, "runtime synced: the gateway routes to the Current revision")


def wait_runner(op: Operation, runner_id: str, *, until: str, timeout: float) -> dict:
    """Wait for a runner to be ready (or gone), renewing the lease and recording each state."""
    deadline = time.monotonic() + timeout
    last_state = None
    while True:
        operations.renew(op)
        remaining = deadline - time.monotonic()
        runner = runtime_client.wait_runner(
            runner_id, until=until, timeout=max(0.1, min(POLL_CHUNK, remaining))
        )
        state = runner.get("state")
        if state != last_state:
            operations.step(op, f"runner {runner_id} is {state}")
            last_state = state
        if until == "ready" and state in runner_states.READY:
            return runner
        if state in runner_states.GONE:
            if until == "gone":
                return runner
            # A runner stopped because its operation was superseded did not fail.
            operations.check_cancelled(op)
            raise Failed(
                f"runner {runner_id} {state.lower()}: {runner.get('error') or 'no error given'}"
            )
        if until == "ready" and state == runner_states.RunnerState.CRASH_BACKOFF:
            operations.check_cancelled(op)
            raise Failed(f"runner {runner_id} crashed: {runner.get('error') or 'no error given'}")
        if time.monotonic() >= deadline:
            raise Failed(
                f"runner {runner_id} was not {until} within {timeout:.0f}s (last state {state})"
            )


def start_and_wait(op: Operation, revision: Revision, run_settings: dict) -> dict:
    """Start one runner of `revision` and wait until it passed its health check."""
    # The key makes a redelivered attempt find the runner the first attempt started. That
    # runner may be gone by then (an idle non-Current runner is retired, a finished one is
    # forgotten), so an attempt that finds none alive starts its own.
    runners = runtime_client.start_runners(
        str(revision.id), 1, key=f"{op.id}:start", settings=run_settings
    )
    if not runners or runners[0].get("state") in runner_states.GONE:
        runners = runtime_client.start_runners(
            str(revision.id), 1, key=f"{op.id}:start:{op.attempts}", settings=run_settings
        )
    runner = runners[0]
    operations.step(op, f"started runner {runner['id']} of {revision.short_id}")
    timeout = float(run_settings.get("startup_timeout", 600)) + STARTUP_SLACK
    try:
        return wait_runner(op, runner["id"], until="ready", timeout=timeout)
    except (Failed, operations.Cancelled) as exc:
        _kill_quietly(runner["id"])
        if isinstance(exc, operations.Cancelled):
            operations.step(op, f"stopped runner {runner['id']}: the operation was cancelled")
        raise


def _stop_quietly(runner_id: str) -> None:
    try:
        runtime_client.stop_runner(runner_id)
    except runtime_client.FAILURES as exc:
        log.warning("could not stop runner %s: %s", runner_id, exc)


def _kill_quietly(runner_id: str) -> None:
    try:
        runtime_client.kill_runner(runner_id)
    except runtime_client.FAILURES as exc:
        log.warning("could not kill runner %s: %s", runner_id, exc)


def move_alias(
    op: Operation,
    revision: Revision,
    new_settings: dict,
    *,
    deploy: bool,
    locked_app: App | None = None,
) -> dict[str, Any]:
    """Move the alias atomically, re-checking under lock that the target may become Current.

    `locked_app` is the app row when the caller already locked it in its own transaction
    (the set-rev view does), which spares locking it a second time. Returns the app's new
    routing state (events.app_state), or None when a deploy found the app held (the
    revision is then Deployed but not Current). The caller tells the runtime
    (sync_runtime, with that state) only after the transaction committed.

    Under the app's lock it also re-checks that the operation was not cancelled (a cancel
    is requested under that lock, so nothing is ever half switched), keeps Previous and
    "Current since / set by", and sets the hold when a set-rev is a rollback.
    """
    # No savepoint inside a caller's transaction: a failure here must undo all of it.
    with transaction.atomic(savepoint=False):
        app = (
            locked_app
            if locked_app is not None
            else App.objects.select_for_update().get(pk=op.app_id)
        )
        operations.check_cancelled(op)
        target = Revision.objects.select_for_update().get(pk=revision.pk)
        if target.app_id != app.pk:
            raise Failed(f"revision {target.short_id} does not belong to {app.name}")
        promote = deploy and bool(op.params.get("promote"))
        if deploy and app.held and not promote:
            if target.status != RevisionStatus.DEPLOYING:
                raise Failed(f"revision {target.short_id} is {target.status}, not deploying")
            target.status = RevisionStatus.DEPLOYED
            target.deployed_at = timezone.now()
            target.settings = new_settings
            target.save(update_fields=["status", "deployed_at", "settings"])
            # Remembered in the same transaction: a redelivered attempt then knows.
            op.result = {**op.result, "held_at_deploy": True}
            Operation.objects.filter(pk=op.pk).update(result=op.result)
            operations.step(op, operations.hold_note(app))
            return None
        rollback = not deploy and operations.is_rollback(app, target)
        if deploy:
            if target.status != RevisionStatus.DEPLOYING:
                raise Failed(f"revision {target.short_id} is {target.status}, not deploying")
            target.status = RevisionStatus.DEPLOYED
            target.deployed_at = timezone.now()
            target.settings = new_settings
            target.save(update_fields=["status", "deployed_at", "settings"])
        elif refusal := refusals.become_current(target):
            raise Failed(refusal.message)
        # Only the previous revision's id is needed (its short form), not the row.
        previous = app.current_revision_id
        app.current_revision = target
        app.settings = new_settings
        app.scale_overrides = []
        app.generation += 1
        if previous and previous != target.pk:
            app.previous_revision_id = previous
        app.current_since, app.current_operation = timezone.now(), op
        fields = [
            "current_revision",
            "settings",
            "scale_overrides",
            "generation",
            "previous_revision",
            "current_since",
            "current_operation",
            "updated_at",
        ]
        released = promote and app.held
        if released:
            app.held, app.held_at, app.held_operation = False, None, None
        if rollback and app.hold_on_rollback:
            app.held, app.held_at, app.held_operation = True, app.current_since, op
        if released or rollback:
            fields += ["held", "held_at", "held_operation"]
        app.save(update_fields=fields)
        was = f" (was {short_id(previous)})" if previous else ""
        operations.step(op, f"alias {app.name} now points to {target.short_id}{was}")
        if released:
            operations.step(op, f"promoted: the hold on {app.name} is released")
        if rollback and app.hold_on_rollback:
            operations.step(
                op,
                f"rollback: {app.name} is held — later deploys will not become Current until "
                f"`switchboard apps release {app.name}` or a deploy with --promote",
            )
        state = events.app_state(app)
        events.publish_app_changed(app.name, state)
    return state


def switch_alias(op: Operation, revision: Revision, new_settings: dict, *, deploy: bool) -> bool:
    """Move the alias and tell the runtime; False if a held app kept it (deploys only)."""
    state = move_alias(op, revision, new_settings, deploy=deploy)
    if state is None:
        return False
    sync_runtime(op, op.app.name, state)
    return True


# -- deploy -------------------------------------------------------------------------


def import_check(revision: Revision) -> dict[str, Any]:
    """Import the app in a child process inside the runner sandbox (sandboxed.py).

    User code never runs in the control plane, and here it sees only its bundle, the SDK
    and a private /tmp, under the smallest machine type's limits. What it raised comes
    back bounded (the error line, the traceback's tail): never the rest of its output.
    """
    try:
        sandbox.share_bundle(revision.bundle_dir)
    except OSError as exc:
        raise Failed(f"the bundle cannot be prepared for the sandbox: {exc.strerror}") from None
    limits = json.dumps(conf.MACHINE_TYPES["XS"])
    wrapped = sandbox.wrap(["-m", "dashboard.sdk.inspect"], bundle_dir=revision.bundle_dir)
    # The command line ends with the Python arguments: these follow them.
    argv = [*wrapped.argv, wrapped.app_dir, revision.entrypoint, limits]
    try:
        proc = subprocess.run(
            argv,
            cwd=wrapped.cwd,
            env=wrapped.env,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=IMPORT_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise Failed(f"import check timed out after {IMPORT_TIMEOUT:.0f}s") from None
    except OSError as exc:
        raise Failed(f"the import check could not start: {exc.strerror}") from None
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    try:
        outcome = json.loads(lines[-1])
        if not isinstance(outcome, dict):
            raise ValueError
    except (IndexError, ValueError):
        tail = proc.stderr[-IMPORT_TAIL_CHARS:]
        raise ImportCheckFailed(
            f"import check crashed (exit code {proc.returncode})", tail
        ) from None
    if not outcome.get("ok"):
        error = str(outcome.get("error"))[:IMPORT_ERROR_CHARS]
        raise ImportCheckFailed(
            f"import check failed: {error}",
            str(outcome.get("traceback", ""))[-IMPORT_TAIL_CHARS:].strip(),
        )
    return outcome


class ImportCheckFailed(Failed):
    def __init__(self, message: str, log_tail: str):
        super().__init__(message)
        self.log_tail = log_tail


def _revision_logs(revision: Revision) -> str:
    try:
        text = runtime_client.logs(revision=str(revision.id), tail=LOG_TAIL_LINES)
    except runtime_client.FAILURES as exc:
        return f"(runner logs unavailable: {runtime_client.error(exc)})"
    return text if isinstance(text, str) else json.dumps(text)


def _fail_revision(revision: Revision, error: str, log_tail: str) -> None:
    Revision.objects.filter(pk=revision.pk, status=RevisionStatus.DEPLOYING).update(
        status=RevisionStatus.FAILED, error=error, log_tail=log_tail[-20000:]
    )


def run_deploy(op: Operation) -> dict:
    revision = op.revision
    if revision is None:
        raise Failed("its revision was deleted before it deployed")
    app = App.objects.get(pk=op.app_id)
    if revision.status == RevisionStatus.DEPLOYED and app.current_revision_id == revision.id:
        # A redelivery after the switch: finish the one step that may not have happened.
        sync_runtime(op, app.name)
        return {"revision": str(revision.id), "settings": revision.settings}
    if revision.status == RevisionStatus.DEPLOYED and op.result.get("held_at_deploy"):
        return {"revision": str(revision.id), "settings": revision.settings, "promoted": False}
    if revision.status != RevisionStatus.DEPLOYING:
        raise Failed(f"revision {revision.short_id} is {revision.status}, not deploying")
    strategy = op.params.get("strategy", "rolling")
    try:
        operations.step(op, f"import check of {revision.entrypoint}")
        described = import_check(revision)
        try:
            code = parameters.code_values(described["settings"])
        except parameters.ParameterError as exc:
            raise Failed(f"the code declares values out of range: {exc}") from None
        first = not app.settings
        reset = bool(op.params.get("reset_scale"))
        new_settings = parameters.for_deploy(code, None if first else app.settings, reset)
        Revision.objects.filter(pk=revision.pk).update(
            code_settings=code, settings=new_settings, endpoints=described.get("endpoints", [])
        )
        revision.code_settings, revision.settings = code, new_settings
        source = (
            "the code (first deploy)"
            if first
            else ("the code (--reset-scale)" if reset else "the alias")
        )
        operations.step(
            op,
            f"import check passed: endpoints {', '.join(described.get('endpoints', [])) or 'none'}"
            f"; runtime-tunable values from {source}, code-specific from the code",
        )
        operations.renew(op)  # A safe point: the import check does not renew.
        runner = start_and_wait(op, revision, new_settings) if strategy == "rolling" else None
        promoted = switch_alias(op, revision, new_settings, deploy=True)
    except ImportCheckFailed as exc:
        _fail_revision(revision, str(exc), exc.log_tail)
        raise
    except Failed as exc:
        _fail_revision(revision, str(exc), _revision_logs(revision))
        raise
    if not promoted and runner is not None:
        # It proved the revision healthy; a held app does not route to it, so it goes.
        _stop_quietly(runner["id"])
    return {
        "revision": str(revision.id),
        "settings": new_settings,
        "strategy": strategy,
        "promoted": promoted,
    }


# -- set-rev ------------------------------------------------------------------------


def run_set_rev(op: Operation) -> dict:
    target = op.revision
    if target is None:
        raise Failed("the target revision was deleted")
    app = App.objects.get(pk=op.app_id)
    if app.current_revision_id == target.id:
        sync_runtime(op, app.name)
        return {"revision": str(target.id), "settings": app.settings}
    if refusal := refusals.become_current(target):
        raise Failed(f"{refusal.message}; alias unchanged")
    new_settings = parameters.for_set_rev(target.code_settings or target.settings, app.settings)
    strategy = op.params.get("strategy", "rolling")
    if strategy == "rolling":
        try:
            start_and_wait(op, target, new_settings)
        except Failed as exc:
            raise Failed(f"{exc}; alias unchanged") from None
    switch_alias(op, target, new_settings, deploy=False)
    return {"revision": str(target.id), "settings": new_settings, "strategy": strategy}


# -- rollout ------------------------------------------------------------------------


def _remember(op: Operation, **values: Any) -> None:
    op.result = {**op.result, **values}
    Operation.objects.filter(pk=op.pk).update(result=op.result)


def run_rollout(op: Operation) -> dict:
    app = App.objects.select_related("current_revision").get(pk=op.app_id)
    current = app.current_revision
    if current is None:
        raise Failed(f"app {app.name} has no current revision")
    old = op.result.get("old_runners")
    if old is None:
        old = [
            r["id"]
            for r in runtime_client.list_runners(revision=str(current.id))
            if r["state"] in runner_states.ACTIVE
        ]
        _remember(op, old_runners=old)
    if not old:
        operations.step(op, "no runners to restart")
        return {"restarted": 0}
    force = bool(op.params.get("force"))
    if force:
        for runner_id in old:
            runtime_client.kill_runner(runner_id)
            operations.step(op, f"killed runner {runner_id}")
        return {"restarted": len(old), "force": True}
    replacements = runtime_client.start_runners(str(current.id), len(old), key=f"{op.id}:start")
    operations.step(
        op, f"started {len(replacements)} replacement runner(s) for {len(old)} old one(s)"
    )
    startup = float(app.settings.get("startup_timeout", 600)) + STARTUP_SLACK
    try:
        for runner in replacements:
            wait_runner(op, runner["id"], until="ready", timeout=startup)
    except operations.Cancelled:
        # Cancelled before any old runner was stopped: the replacements are all it did.
        for runner in replacements:
            _kill_quietly(runner["id"])
        operations.step(op, f"stopped {len(replacements)} replacement runner(s): cancelled")
        raise
    drain = float(app.settings.get("request_timeout", 3600)) + STARTUP_SLACK
    for runner_id in old:
        runtime_client.stop_runner(runner_id)
        operations.step(op, f"stopping runner {runner_id} gracefully")
    for runner_id in old:
        wait_runner(op, runner_id, until="gone", timeout=drain)
    return {"restarted": len(old), "force": False}


# -- delete-rev ---------------------------------------------------------------------


def run_delete_rev(op: Operation) -> dict:
    revision_id = op.params["revision"]
    revision = Revision.objects.filter(pk=revision_id).first()
    if revision is None:
        operations.step(op, "revision already deleted")
        return {"deleted": revision_id}
    app = App.objects.get(pk=op.app_id)
    # Asked again under the worker: Current may have moved onto it since it was accepted.
    # Not thoroughly: this very operation is still in progress on it.
    if refusal := refusals.delete_rev(app, revision, op.source, thorough=False):
        raise Failed(refusal.message)
    # The last safe point: once runners stop and the bundle goes, the delete completes.
    operations.check_cancelled(op)
    stopped = runtime_client.stop_revision(str(revision.id))
    operations.step(op, f"stopped {len(stopped)} runner(s) of {revision.short_id}")
    bundles.remove(revision.bundle_dir)
    operations.step(op, "removed its bundle")
    with transaction.atomic():
        app = App.objects.select_for_update().get(pk=op.app_id)
        if app.current_revision_id == revision.id:
            raise Failed(f"revision {revision.short_id} became Current; not deleted")
        deleted_short = revision.short_id  # delete() clears the primary key.
        revision.delete()
    operations.step(op, f"deleted revision {deleted_short}")
    return {"deleted": revision_id}


# -- runners ------------------------------------------------------------------------


def run_runner_stop(op: Operation) -> dict:
    runner_id = op.params["runner"]
    replace = bool(op.params.get("replace"))
    runtime_client.stop_runner(runner_id, replace=replace)
    operations.step(
        op,
        f"stopping runner {runner_id} gracefully" + (" after its replacement" if replace else ""),
    )
    drain = float(op.app.settings.get("request_timeout", 3600)) + STARTUP_SLACK
    if replace:
        drain += float(op.app.settings.get("startup_timeout", 600))
    runner = wait_runner(op, runner_id, until="gone", timeout=drain)
    return {"runner": runner_id, "state": runner.get("state")}


def run_runner_kill(op: Operation) -> dict:
    runner_id = op.params["runner"]
    runtime_client.kill_runner(runner_id)
    operations.step(op, f"killed runner {runner_id}")
    runner = wait_runner(op, runner_id, until="gone", timeout=30)
    return {"runner": runner_id, "state": runner.get("state")}


EXECUTORS: dict[str, Callable[[Operation], dict]] = {
    OperationKind.DEPLOY: run_deploy,
    OperationKind.SET_REV: run_set_rev,
    OperationKind.ROLLOUT: run_rollout,
    OperationKind.DELETE_REV: run_delete_rev,
    OperationKind.RUNNER_STOP: run_runner_stop,
    OperationKind.RUNNER_KILL: run_runner_kill,
}


def _undo_cancelled(op: Operation) -> None:
    """A cancelled deploy's revision will never serve: stop every runner it has (a
    redelivered attempt may not know the one an earlier attempt started)."""
    if op.kind != OperationKind.DEPLOY or not op.revision_id:
        return
    try:
        stopped = runtime_client.stop_revision(str(op.revision_id), force=True)
    except runtime_client.FAILURES as exc:
        operations.step(
            op, f"runtime could not stop the revision's runners ({runtime_client.error(exc)})"
        )
        return
    if stopped:
        operations.step(op, f"stopped {len(stopped)} runner(s) of {short_id(op.revision_id)}")


def execute(operation_id: str) -> Operation | None:
    """Run one queued operation to its end. Safe to call again for the same operation."""
    op = operations.claim(operation_id)
    if op is None:
        log.info("operation %s is finished or held by another worker; nothing to do", operation_id)
        return None
    if op.attempts > 1:
        operations.step(op, f"resumed by a worker (attempt {op.attempts})")
    executor = EXECUTORS.get(op.kind)
    try:
        if executor is None:
            raise Failed(f"{op.get_kind_display()} does not run in the worker")
        operations.check_cancelled(op)  # Cancelled while its worker was lost.
        result = executor(op)
    except operations.Abandoned:
        log.warning("operation %s was ended elsewhere while it ran", op.id)
        return op
    except operations.Cancelled:
        _undo_cancelled(op)
        operations.end_cancelled(op)
    except Failed as exc:
        operations.fail(op, str(exc))
    except runtime_client.FAILURES as exc:
        operations.fail(op, runtime_client.error(exc).message)
    except SoftTimeLimitExceeded:
        operations.fail(op, "ran past the worker's time limit")
    except Exception as exc:
        log.exception("operation %s crashed", op.id)
        operations.fail(op, f"internal error: {type(exc).__name__}: {exc}")
    else:
        operations.step(op, "done")
        operations.succeed(op, result)
        if op.kind == OperationKind.DEPLOY:
            retention.schedule(op.app_id)  # Queued: the deploy never waits for it.
    return op
