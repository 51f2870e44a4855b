"""Recording, serialising, queueing and recovering operations.

Every mutation is an Operation row. The database refuses a second unfinished operation
on the same app (constraint one_active_operation_per_app), which is what serialises
mutations even across processes; this module turns that refusal into a 409 naming the
operation in progress. The one exception is cancellation: an operation whose cancel was
requested (by someone, or by a set-rev that supersedes it) no longer counts, and its
executor ends it `cancelled` at its next safe point. It can never move the alias after
the request, because move_alias re-checks it under the app's row lock, the same lock the
cancel is requested under. Long operations run in the Celery worker under a lease that the
executor renews; the sweeper hands an operation whose lease lapsed to another worker
and fails one that ran past its deadline, so no accepted operation is ever lost.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psutil
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from dashboard.controlplane import events
from dashboard.controlplane.errors import BadRequest, Conflict, ControlError, NotFound
from dashboard.controlplane.models import (
    App,
    Operation,
    OperationKind,
    OperationState,
    OperationStep,
    Revision,
    RevisionStatus,
    Role,
    short_id,
)
from dashboard.system.redis_service import redacted
from dashboard.webhooks.events import operation_finished

log = logging.getLogger(__name__)

# An executor renews its lease well within this; a lease this old means its process died.
LEASE = timedelta(seconds=60)
# A queued operation nobody claimed for this long lost its message (e.g. Redis restarted).
UNCLAIMED_AFTER = timedelta(seconds=60)
# A queued operation no worker has taken for this long ends Failed, saying so, rather
# than wait for a worker forever (and keep every later change of its app waiting).
QUEUED_LIMIT = timedelta(seconds=settings.OPERATION_QUEUED_LIMIT)
MAX_ATTEMPTS = 5
QUEUE_UNAVAILABLE = "task queue unavailable"


@dataclass(frozen=True)
class Actor:
    """Who asks, in what role, from where, and the Idempotency-Key they sent (if any)."""

    user: Any
    role: Role
    source: str = "api"
    idempotency_key: str = ""
    # What the key is bound to (api.body.fingerprint: caller, method, path and body).
    request_hash: str = ""


def replay(actor: Actor) -> Operation | None:
    """The operation this requester already created with this Idempotency-Key, if any.

    The key replays only the request it was first sent with: the same key on a different
    request is refused (422 idempotency_key_reused) rather than answered with the earlier
    operation, which would silently drop the new request.
    """
    if not actor.idempotency_key:
        return None
    earlier = (
        Operation.objects.filter(requester=actor.user, idempotency_key=actor.idempotency_key)
        .select_related("app", "revision")
        .first()
    )
    # Operations recorded before keys were bound have no hash; they replay as they did.
    if earlier is not None and earlier.request_hash and earlier.request_hash != actor.request_hash:
        raise ControlError(
            f"Idempotency-Key {actor.idempotency_key!r} was already used for a different "
            f"request ({earlier.get_kind_display()} of {earlier.app.name}, operation "
            f"{earlier.id}); send a new key for a new request",
            details={"operation": str(earlier.id), "kind": earlier.kind},
            status=422,
            code="idempotency_key_reused",
        )
    return earlier


class Replayed(Exception):
    """Raised when a concurrent request with the same Idempotency-Key won the race."""

    def __init__(self, operation: Operation):
        self.operation = operation


def busy_error(app: App) -> Conflict:
    active = Operation.objects.filter(
        app=app, finished_at__isnull=True, cancel_requested_at__isnull=True
    ).first()
    if active is None:
        return Conflict(f"another operation on {app.name!r} was just started; try again")
    return Conflict(
        f"{active.get_kind_display()} operation {active.id} is in progress on app "
        f"{app.name!r} (requested by {active.requester_name or 'unknown'}); operations on "
        "one app run one at a time, so wait for it to finish",
        details={"operation": str(active.id), "kind": active.kind, "state": active.state},
        code="operation_in_progress",
    )


def create(
    app: App,
    kind: OperationKind,
    actor: Actor,
    *,
    reason: str = "",
    params: dict | None = None,
    revision: Revision | None = None,
    deadline: timedelta | None = None,
    running: bool = False,
) -> Operation:
    """Insert the operation (in a savepoint of the caller's transaction) or refuse with 409."""
    now = timezone.now()
    result: dict[str, Any] = {}
    if deadline is not None:
        result["deadline"] = (now + deadline).isoformat()
    try:
        with transaction.atomic():
            op = Operation.objects.create(
                app=app,
                kind=kind,
                state=OperationState.RUNNING if running else OperationState.QUEUED,
                requester=actor.user,
                # Retention's own deletions have no user: History names their source.
                requester_name=actor.user.get_username() if actor.user else actor.source,
                source=actor.source,
                reason=reason,
                params=params or {},
                revision=revision,
                idempotency_key=actor.idempotency_key,
                request_hash=actor.request_hash if actor.idempotency_key else "",
                created_at=now,
                started_at=now if running else None,
                result=result,
            )
    except IntegrityError:
        earlier = replay(actor)
        if earlier is not None:
            raise Replayed(earlier) from None
        raise busy_error(app) from None
    events.publish_page_changed(app.pk)
    return op


def step(op: Operation, message: str) -> OperationStep:
    log.info("operation %s (%s %s): %s", op.id, op.kind, op.app_id, message)
    events.publish_page_changed(op.app_id)
    return OperationStep.objects.create(operation=op, message=message)


def _finish(op: Operation, state: OperationState, *, error: str = "", result: dict | None = None):
    now = timezone.now()
    merged = {**op.result, **(result or {})}
    done = Operation.objects.filter(pk=op.pk, finished_at__isnull=True).update(
        state=state,
        finished_at=now,
        error=error,
        result=merged,
        lease_until=None,
        started_at=Coalesce("started_at", Value(now)),
    )
    if done:
        # Webhooks hear of the end once it is committed; robust: they never fail the operation.
        transaction.on_commit(functools.partial(operation_finished, op.pk), robust=True)
        events.publish_page_changed(op.app_id)
        op.state, op.finished_at, op.error, op.result = state, now, error, merged
        op.started_at = op.started_at or now
    return bool(done)


def succeed(op: Operation, result: dict | None = None) -> bool:
    return _finish(op, OperationState.SUCCEEDED, result=result)


def fail(op: Operation, reason: str, result: dict | None = None) -> bool:
    """End the operation as failed. A deploy's revision can then never be left Deploying."""
    with transaction.atomic():
        finished = _finish(op, OperationState.FAILED, error=reason, result=result)
        if finished:
            step(op, f"failed: {reason}")
            _fail_deploy_revision(op, reason)
    return finished


def _fail_deploy_revision(op: Operation, error: str) -> None:
    if op.kind == OperationKind.DEPLOY and op.revision_id:
        Revision.objects.filter(pk=op.revision_id, status=RevisionStatus.DEPLOYING).update(
            status=RevisionStatus.FAILED, error=error
        )


def end_cancelled(op: Operation, result: dict | None = None) -> bool:
    """End the operation `cancelled`; a deploy's revision ends Failed with the same words."""
    op.refresh_from_db(fields=["cancel_reason", "cancel_requested_at"])
    error = f"cancelled: {op.cancel_reason or 'no reason recorded'}"
    with transaction.atomic():
        finished = _finish(op, OperationState.CANCELLED, error=error, result=result)
        if finished:
            step(op, error)
            _fail_deploy_revision(op, error)
    return finished


def submit(op: Operation) -> None:
    """Queue the operation for the worker once the surrounding transaction commits.

    If the broker cannot be reached the operation ends failed at once with a reason (the
    caller sees op.state == failed and answers 503): it was never half-started.
    """

    def send() -> None:
        from dashboard.controlplane.tasks import execute_operation

        try:
            execute_operation.apply_async((str(op.id),), retry=False)
        except Exception as exc:  # noqa: BLE001 - kombu raises many types for "no broker".
            log.warning("could not queue operation %s: %s", op.id, exc)
            fail(
                op,
                f"{QUEUE_UNAVAILABLE}: Redis at {redacted(settings.CELERY_BROKER_URL)} did not "
                "answer, so nothing was started; try again once Redis is back (the worker "
                "reconnects by itself)",
            )
            return
        _mark_enqueued(op)

    transaction.on_commit(send)


def _mark_enqueued(op: Operation) -> None:
    op.result = {**op.result, "enqueued_at": timezone.now().isoformat()}
    Operation.objects.filter(pk=op.pk, finished_at__isnull=True).update(result=op.result)


# -- executor side -------------------------------------------------------------------


class Abandoned(Exception):
    """The operation finished elsewhere (deadline, sweeper) while this executor ran."""


class Cancelled(Exception):
    """Someone asked to cancel the operation (or a set-rev superseded it): its executor
    undoes what it started that is not yet in use and ends it `cancelled`."""


def this_process() -> str:
    """Who holds a lease: host, pid and the process's start time (pids are reused).

    Not cached: a Celery pool process is forked, and a value cached before the fork would
    name the parent."""
    return f"{socket.gethostname()}:{os.getpid()}:{psutil.Process().create_time():.2f}"


def holder_is_gone(holder: str) -> bool:
    """Whether the process named by a lease is known to be dead.

    Only a process on this host can be checked; one elsewhere is trusted until its lease
    lapses. This is what lets Celery's redelivery of a task whose worker process died
    resume it at once, instead of after the dead process's lease runs out.
    """
    host, _, rest = holder.partition(":")
    pid, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        return f"{psutil.Process(int(pid)).create_time():.2f}" != started
    except psutil.NoSuchProcess:
        return True


def claim(operation_id: str) -> Operation | None:
    """Take the operation if nobody alive holds a lease on it; None if someone does (or done)."""
    now = timezone.now()
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    holder = (
        Operation.objects.filter(pk=operation_id, finished_at__isnull=True)
        .values_list("lease_holder", flat=True)
        .first()
    )
    if holder and holder_is_gone(holder):
        free |= Q(lease_holder=holder)  # Still that dead holder's, not a new one's.
    taken = Operation.objects.filter(free, pk=operation_id, finished_at__isnull=True).update(
        lease_until=now + LEASE,
        lease_holder=this_process(),
        attempts=F("attempts") + 1,
        state=OperationState.RUNNING,
        started_at=Coalesce("started_at", Value(now)),
    )
    if not taken:
        return None
    op = Operation.objects.select_related("app", "revision").get(pk=operation_id)
    events.publish_page_changed(op.app_id)  # Queued -> Running.
    return op


def renew(op: Operation) -> None:
    """Extend the lease; raise Abandoned if the operation was ended by someone else, and
    Cancelled if its cancellation was requested: every renewal is a safe point."""
    lease = timezone.now() + LEASE
    # One query in the usual case: the cancel check is part of the renewal's condition.
    if Operation.objects.filter(
        pk=op.pk, finished_at__isnull=True, cancel_requested_at__isnull=True
    ).update(lease_until=lease):
        return
    if not Operation.objects.filter(pk=op.pk, finished_at__isnull=True).update(lease_until=lease):
        raise Abandoned(str(op.id))
    raise Cancelled(str(op.id))


def check_cancelled(op: Operation) -> None:
    """Raise Cancelled if the operation's cancellation was requested (a safe point).

    Inside a transaction that holds the app's row lock (move_alias), the answer stands
    until it commits: a cancel is requested under that same lock."""
    if Operation.objects.filter(pk=op.pk, cancel_requested_at__isnull=False).exists():
        raise Cancelled(str(op.id))


# -- cancel and supersede ---------------------------------------------------------------


def is_rollback(app: App, target: Revision) -> bool:
    """A set-rev to a revision older than Current is a rollback (newer: a roll forward)."""
    current = (
        app.current_revision_id and Revision.objects.filter(pk=app.current_revision_id).first()
    )
    return bool(current) and (target.created_at, str(target.id)) < (
        current.created_at,
        str(current.id),
    )


def request_cancel(op: Operation, actor: Actor, why: str) -> Operation:
    """Ask `op` to stop at its next safe point; call with the app's row locked.

    An operation no worker ever took ends cancelled at once (it started nothing): a worker
    that claims it later finds it finished. One that runs keeps running until its executor
    notices (operations.renew, within about a second while it waits for a runner) and
    ends it, undoing what it started; if its worker died, the sweeper queues it again and
    the next worker does that before anything else (executors.execute). Either way it
    stops counting against one_active_operation_per_app now, so the next operation may
    start.
    """
    now = timezone.now()
    with transaction.atomic():
        op = Operation.objects.select_for_update().get(pk=op.pk)
        if op.finished_at is not None or op.cancel_requested_at is not None:
            return op
        op.cancel_requested_at, op.cancel_requested_by, op.cancel_reason = now, actor.user, why
        op.save(update_fields=["cancel_requested_at", "cancel_requested_by", "cancel_reason"])
        untouched = op.state == OperationState.QUEUED and op.attempts == 0
        step(op, f"cancel requested: {why}")
        if untouched:
            end_cancelled(op)
    return op


def supersede(app: App, actor: Actor, target: Revision) -> Operation | None:
    """Cancel the operation running on `app` for a set-rev to `target` (app row locked)."""
    active = Operation.objects.filter(
        app=app, finished_at__isnull=True, cancel_requested_at__isnull=True
    ).first()
    if active is None:
        return None
    if active.kind == OperationKind.SET_REV and active.revision_id == target.pk:
        # The same switch asked twice (a second click): restarting it would only delay it.
        raise Conflict(
            f"set-rev operation {active.id} to {target.short_id} is already in progress on app "
            f"{app.name!r} (requested by {active.requester_name or 'unknown'}); follow it "
            "instead of starting it again",
            details={"operation": str(active.id), "kind": active.kind, "state": active.state},
            code="operation_in_progress",
        )
    what = "rollback" if is_rollback(app, target) else "set-rev"
    who = actor.user.get_username()
    return request_cancel(active, actor, f"superseded by {who}'s {what} to {target.short_id}")


def cancel_refusal(op: Operation) -> Conflict | None:
    """Why `op` cannot be cancelled (it already ended), or None."""
    if op.finished_at is None:
        return None
    return Conflict(
        f"{op.get_kind_display()} operation {op.id} already ended {op.get_state_display()} "
        f"at {op.finished_at.isoformat(timespec='seconds')}; there is nothing to cancel",
        details={"operation": str(op.id), "state": op.state},
        code="operation_finished",
    )


# -- acting on the state the requester saw ------------------------------------------------


def alias_move_of(app: App) -> Operation | None:
    """The operation that made Current what it is (a deploy or set-rev)."""
    if app.current_operation_id:
        return Operation.objects.filter(pk=app.current_operation_id).first()
    # Switches made before this was recorded: the last successful one to the revision.
    return (
        Operation.objects.filter(
            app=app,
            kind__in=(OperationKind.DEPLOY, OperationKind.SET_REV),
            revision_id=app.current_revision_id,
            state=OperationState.SUCCEEDED,
        )
        .order_by("-finished_at")
        .first()
    )


def check_expected_current(app: App, expected: object) -> None:
    """Refuse (409 current_changed) unless Current is still the revision the requester saw.

    `expected` is the revision id or unique prefix they were shown as Current (None or ""
    when they did not say). Call it with the app's row locked, before changing anything:
    the API's set-rev, delete-rev, suspend and rollout do, and the dashboard's dialogs
    send what they showed. The answer says who changed Current, to what and when.
    """
    if expected is None or expected == "":
        return
    if not isinstance(expected, str):
        raise BadRequest(
            "expected_current must be a string: the id (or a unique prefix of 8+ hex "
            "characters) of the revision you saw as Current"
        )
    from dashboard.controlplane.revisions import resolve

    try:
        seen_id, seen = resolve(app, expected).id, None
    except NotFound as exc:
        if exc.code == "revision_of_another_app":
            raise
        seen_id, seen = None, expected  # Deleted since: it cannot be Current any more.
    if seen_id is not None and seen_id == app.current_revision_id:
        return
    move = alias_move_of(app)
    now_current = short_id(app.current_revision_id) if app.current_revision_id else "none"
    saw = short_id(seen_id) if seen_id else repr(seen)
    if move is not None:
        at = move.finished_at or move.started_at or move.created_at
        kind = move.get_kind_display()
        by = (
            f"set by {move.requester_name or 'unknown'} ({kind} operation {move.id}) at "
            f"{at.isoformat(timespec='seconds')}"
        )
    else:
        at, kind, by = None, None, "set by an operation no longer recorded"
    raise Conflict(
        f"Current of {app.name} changed: you saw {saw}, it is now {now_current}, {by}; "
        "nothing was changed — look at the app again and retry",
        details={
            "expected": str(seen_id) if seen_id else seen,
            "current": str(app.current_revision_id) if app.current_revision_id else None,
            "changed_by": move.requester_name if move else None,
            "changed_at": at.isoformat() if at else None,
            "operation": str(move.id) if move else None,
            "kind": move.kind if move else None,
            "reason": move.reason if move else "",
        },
        code="current_changed",
    )


# -- the hold a rollback sets ---------------------------------------------------------------


def hold_note(app: App) -> str:
    """What a deploy refused promotion says (and the CLI prints)."""
    held = app.held_operation
    who = held.requester_name if held else "someone"
    since = app.held_at.isoformat(timespec="seconds") if app.held_at else "a rollback"
    return (
        f"deployed; not made Current: {app.name} is held since {since} by {who}'s rollback — "
        f"release it with `switchboard apps release {app.name}` or deploy with --promote"
    )


def deadline_of(op: Operation) -> datetime | None:
    raw = op.result.get("deadline")
    return parse_datetime(raw) if raw else None


def sweep() -> dict[str, int]:
    """Recover unfinished operations: fail the overdue, re-queue the orphaned."""
    now = timezone.now()
    counts = {"failed": 0, "requeued": 0}
    for op in Operation.objects.filter(finished_at__isnull=True).select_related("app"):
        deadline = deadline_of(op)
        if deadline and now > deadline:
            if fail(op, f"exceeded its deadline ({deadline.isoformat()}) without finishing"):
                counts["failed"] += 1
            continue
        if op.attempts >= MAX_ATTEMPTS and op.lease_until and op.lease_until < now:
            if fail(op, f"its worker was lost {op.attempts} times; giving up"):
                counts["failed"] += 1
            continue
        lapsed = op.state == OperationState.RUNNING and op.lease_until and op.lease_until < now
        enqueued = parse_datetime(op.result.get("enqueued_at", "") or "") or op.created_at
        if op.state == OperationState.QUEUED and op.created_at < now - QUEUED_LIMIT:
            waited = int((now - op.created_at).total_seconds())
            if fail(
                op,
                f"no worker picked it up in {waited}s: is the Celery worker running? "
                "(`manage.py up` starts one; its log is var/logs/worker.log)",
            ):
                counts["failed"] += 1
            continue
        unclaimed = op.state == OperationState.QUEUED and enqueued < now - UNCLAIMED_AFTER
        if lapsed or unclaimed:
            why = "its worker's lease lapsed" if lapsed else "no worker picked it up"
            step(op, f"{why}; queued again (attempt {op.attempts + 1})")
            Operation.objects.filter(pk=op.pk, finished_at__isnull=True).update(
                state=OperationState.QUEUED
            )
            op.state = OperationState.QUEUED
            submit(op)
            counts["requeued"] += 1
    return counts
