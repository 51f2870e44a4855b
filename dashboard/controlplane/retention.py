"""Retention: keep each app's newest revisions and delete older ones, never one that matters.

Per app, the newest `App.retention_keep` revisions stay (default 20); an older one is
deleted unless it is protected: Current, Previous (the one-click way back), pinned, the
target of an operation in progress, or one of the last three Deployed revisions (so a
rollback always has somewhere to go). `why_kept` is the one home of that rule: the plan,
the dry run and the delete-rev executor's last check all ask it.

Each deletion is an ordinary delete-rev operation whose source is `retention`, run by the
existing delete-rev executor one at a time (operations on one app are serialised), so it
appears in History like any other. Retention runs after each successful deploy (queued,
never blocking the deploy) and periodically from Celery beat.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction

from dashboard.controlplane import operations
from dashboard.controlplane.errors import BadRequest, Conflict
from dashboard.controlplane.models import (
    App,
    Operation,
    OperationKind,
    OperationState,
    Revision,
    RevisionStatus,
    Role,
    Source,
)

log = logging.getLogger(__name__)

DEFAULT_KEEP = 20
KEEP_MIN, KEEP_MAX = 1, 1000
LAST_DEPLOYED = 3
# One run deletes at most this many revisions; the next run (beat) goes on from there.
BATCH = 100
DELETE_DEADLINE = timedelta(minutes=5)
# Who asks for retention's deletions: no person, so History names the source.
ACTOR = operations.Actor(user=None, role=Role.ADMIN, source=Source.RETENTION)


@dataclass(frozen=True)
class Verdict:
    revision: Revision
    delete: bool
    why: str

    def as_json(self) -> dict[str, Any]:
        rev = self.revision
        return {
            "revision": str(rev.id),
            "short_id": rev.short_id,
            "status": rev.status,
            "created_at": rev.created_at.isoformat(),
            "pinned": rev.pinned,
            "why": self.why,
        }


def check_keep(value: object) -> int:
    """A retention count as the API and CLI accept it, or a precise 400."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise BadRequest(
            f"keep must be a whole number from {KEEP_MIN} to {KEEP_MAX}, got {value!r}",
            code="out_of_range",
        )
    try:
        keep = int(value)
    except ValueError:
        raise BadRequest(
            f"keep must be a whole number from {KEEP_MIN} to {KEEP_MAX}, got {value!r}",
            code="out_of_range",
        ) from None
    if not KEEP_MIN <= keep <= KEEP_MAX:
        raise BadRequest(
            f"keep must be from {KEEP_MIN} to {KEEP_MAX} (revisions kept per app), got {keep}",
            code="out_of_range",
        )
    return keep


def pin_note(revision: Revision) -> str:
    who = revision.pinned_by.get_username() if revision.pinned_by else "someone"
    when = revision.pinned_at.isoformat(timespec="seconds") if revision.pinned_at else "?"
    return f"pinned by {who} at {when}"


def why_kept(
    app: App,
    revision: Revision,
    *,
    rank: int,
    keep: int,
    targets: dict[uuid.UUID, Operation],
    last_deployed: set[uuid.UUID],
) -> str | None:
    """Why retention keeps `revision` (the `rank`-th newest, from 0), or None: it may go."""
    if revision.id == app.current_revision_id:
        return "Current"
    if revision.id == app.previous_revision_id:
        return "Previous: the one-click way back"
    if revision.pinned:
        return pin_note(revision)
    op = targets.get(revision.id)
    if op is not None:
        return f"target of {op.get_kind_display()} operation {op.id}, still in progress"
    if revision.id in last_deployed:
        return f"one of the last {LAST_DEPLOYED} Deployed revisions"
    if rank < keep:
        return f"one of the newest {keep}"
    return None


def plan(app: App, keep: int | None = None) -> list[Verdict]:
    """Every revision of `app`, newest first, with whether retention deletes it and why.

    `keep` overrides the app's setting (a dry run of a new value). Call it with the app's
    row locked when acting on the answer.
    """
    keep = app.retention_keep if keep is None else keep
    revisions = list(
        Revision.objects.filter(app=app)
        .select_related("pinned_by")
        .only(
            "id",
            "app_id",
            "status",
            "created_at",
            "pinned",
            "pinned_at",
            "pinned_by__username",
        )
        .order_by("-created_at", "-id")
    )
    targets = {
        op.revision_id: op
        for op in Operation.objects.filter(
            app=app, finished_at__isnull=True, revision__isnull=False
        ).only("id", "kind", "revision_id")
    }
    deployed = [r.id for r in revisions if r.status == RevisionStatus.DEPLOYED]
    last_deployed = set(deployed[:LAST_DEPLOYED])
    verdicts = []
    for rank, revision in enumerate(revisions):
        why = why_kept(
            app, revision, rank=rank, keep=keep, targets=targets, last_deployed=last_deployed
        )
        verdicts.append(
            Verdict(revision, why is None, why or f"older than the newest {keep}, not protected")
        )
    return verdicts


def dry_run(app: App, keep: int | None = None) -> dict[str, Any]:
    verdicts = plan(app, keep)
    return {
        "keep": app.retention_keep if keep is None else keep,
        "enabled": app.retention_enabled,
        "would_delete": [v.as_json() for v in reversed(verdicts) if v.delete],
        "kept": [v.as_json() for v in verdicts if not v.delete],
    }


def deletion_refusal(app: App, revision: Revision, source: str) -> str | None:
    """Why a delete-rev must not remove `revision` now (the executor's last check), or None.

    A pinned revision is never deleted; retention also spares Previous (invariant 7),
    which a person may still delete by hand.
    """
    if revision.pinned:
        return (
            f"revision {revision.short_id} is pinned ({pin_note(revision)}); unpin it first — "
            "a pinned revision is never deleted"
        )
    if source == Source.RETENTION and revision.id == app.previous_revision_id:
        return f"revision {revision.short_id} is Previous; retention never deletes it"
    return None


def _next_victim(app_id: int) -> Operation | None:
    """Under the app's lock: record the deletion of the oldest revision retention lets go."""
    with transaction.atomic():
        app = App.objects.select_for_update().filter(pk=app_id).first()
        if app is None or not app.retention_enabled:
            return None
        doomed = [v for v in plan(app) if v.delete]
        if not doomed:
            return None
        victim = doomed[-1].revision  # The oldest first.
        return operations.create(
            app,
            OperationKind.DELETE_REV,
            ACTOR,
            reason=(
                f"retention: older than the newest {app.retention_keep} revisions of "
                f"{app.name} and not protected"
            ),
            params={
                "revision": str(victim.id),
                "short_id": victim.short_id,
                "status": victim.status,
                "keep": app.retention_keep,
            },
            revision=victim,
            deadline=DELETE_DEADLINE,
        )


def apply(app_id: int) -> dict[str, Any]:
    """Delete what retention lets go of, one delete-rev operation at a time.

    It stops at the first operation that does not succeed (another operation on the app
    won the race, a set-rev superseded it, the runtime is down): the next run goes on.
    """
    from dashboard.controlplane import executors  # executors queues this module's task.

    deleted: list[str] = []
    stopped = ""
    for _ in range(BATCH):
        try:
            op = _next_victim(app_id)
        except Conflict as exc:
            stopped = exc.message
            break
        if op is None:
            break
        executors.execute(str(op.id))
        op.refresh_from_db(fields=["state", "error"])
        if op.state != OperationState.SUCCEEDED:
            stopped = f"delete-rev operation {op.id} ended {op.state}: {op.error}"
            break
        deleted.append(op.params["short_id"])
    if stopped:
        log.info("retention of app %s stopped: %s", app_id, stopped)
    return {"deleted": deleted, "stopped": stopped}


def schedule(app_id: int) -> None:
    """Queue a retention run for the app; never raises (a deploy must not fail for it)."""
    from dashboard.controlplane.tasks import apply_retention

    try:
        apply_retention.apply_async((app_id,), retry=False)
    except Exception as exc:  # noqa: BLE001 - kombu raises many types for "no broker".
        log.warning("could not queue retention of app %s: %s", app_id, exc)


def sweep() -> int:
    """Queue a retention run for every app that has more revisions than it keeps."""
    from django.db.models import Count, F

    due = (
        App.objects.filter(retention_enabled=True)
        .annotate(n=Count("revisions"))
        .filter(n__gt=F("retention_keep"))
        .values_list("pk", flat=True)
    )
    count = 0
    for app_id in due:
        schedule(app_id)
        count += 1
    return count
