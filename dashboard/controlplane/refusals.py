"""Why a change cannot be made now: one function per refusal rule, each returning the one
error (status, code, message, details) or None.

The control API raises what they return; the dashboard's dialogs raise the same before
anything is enqueued, and its pages show the message on the disabled buttons. So the
API, the CLI and the dashboard refuse alike, in the same words.

`thorough=False` is for the pages, which ask for every row of a table: it answers from
the rows in hand, without a query (a Deploying revision stands for "its deploy is still
in progress"). The API and the dialogs ask thoroughly.

Refusals that need the app's lock live where the lock is taken: another operation in
progress (operations.busy_error), a Current that moved since the requester looked
(operations.check_expected_current).
"""

from __future__ import annotations

from typing import Any

from dashboard.controlplane import retention
from dashboard.controlplane.errors import Conflict
from dashboard.controlplane.models import (
    App,
    Operation,
    OperationKind,
    Revision,
    RevisionStatus,
    Source,
)
from dashboard.runner_states import GONE


def summary(error: str, limit: int = 160) -> str:
    """The first line of a recorded error: a one-line answer, the whole text in details."""
    line = (error.strip().splitlines() or ["no error recorded"])[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _unfinished(revision: Revision, kinds: tuple[str, ...] | None = None) -> Operation | None:
    ops = Operation.objects.filter(revision=revision, finished_at__isnull=True)
    return (ops.filter(kind__in=kinds) if kinds else ops).first()


def _in_progress(target: Revision, op: Operation, doing: str, so: str) -> Conflict:
    return Conflict(
        f"revision {target.short_id} {doing} {op.get_kind_display()} operation {op.id}, "
        f"still in progress; {so}",
        details={"operation": str(op.id), "kind": op.kind},
        code="operation_in_progress",
    )


def become_current(target: Revision) -> Conflict | None:
    """Only a Deployed revision can become Current (asked again by the worker that
    switches, under the app's lock)."""
    status = {"revision": str(target.id), "status": target.status}
    if target.status == RevisionStatus.FAILED:
        return Conflict(
            f"revision {target.short_id} is Failed ({summary(target.error)}); "
            "a Failed revision can never become Current",
            details={**status, "error": target.error},
        )
    if target.status == RevisionStatus.SUSPENDED:
        return Conflict(
            f"revision {target.short_id} is Suspended; resume it before making it Current",
            details=status,
        )
    if target.status == RevisionStatus.DEPLOYING:
        return Conflict(
            f"revision {target.short_id} is still Deploying; only a Deployed revision can "
            "become Current",
            details=status,
        )
    return None


def set_rev(app: App, target: Revision, *, thorough: bool = True) -> Conflict | None:
    """Only a Deployed revision other than Current can become Current, and not while it is
    being deleted."""
    if refusal := become_current(target):
        return refusal
    if app.current_revision_id == target.id:
        return Conflict(
            f"revision {target.short_id} is already Current for {app.name}",
            details={"revision": str(target.id)},
        )
    deleting = _unfinished(target, (OperationKind.DELETE_REV,)) if thorough else None
    if deleting is not None:
        return _in_progress(target, deleting, "is being deleted by", "it cannot become Current")
    return None


def delete_rev(
    app: App, target: Revision, source: str = Source.API, *, thorough: bool = True
) -> Conflict | None:
    """Current is never deleted, nor a pinned revision, nor one an operation still works on."""
    if app.current_revision_id == target.id:
        return Conflict(
            f"revision {target.short_id} is Current for {app.name}; set another "
            "revision first (set-rev) — the Current revision is never deleted",
            details={"revision": str(target.id)},
            code="revision_is_current",
        )
    if target.pinned:
        return Conflict(
            retention.deletion_refusal(app, target, source),
            details={
                "revision": str(target.id),
                "pinned_by": target.pinned_by.get_username() if target.pinned_by else None,
                "pinned_at": target.pinned_at.isoformat() if target.pinned_at else None,
            },
            code="revision_is_pinned",
        )
    if not thorough:
        if target.status == RevisionStatus.DEPLOYING:
            return Conflict(
                f"revision {target.short_id} is still Deploying; wait for its deploy to finish",
                details={"revision": str(target.id), "status": target.status},
                code="operation_in_progress",
            )
        return None
    active = _unfinished(target)
    if active is not None:
        return _in_progress(target, active, "is the target of", "wait for it to finish")
    return None


def suspend_or_resume(target: Revision, *, suspend: bool) -> Conflict | None:
    """Only a Deployed revision is suspended, and only a Suspended one resumed."""
    wanted = RevisionStatus.DEPLOYED if suspend else RevisionStatus.SUSPENDED
    if target.status == wanted:
        return None
    return Conflict(
        f"revision {target.short_id} is {target.get_status_display()}; only a "
        f"{wanted.label} revision can be {'suspended' if suspend else 'resumed'}",
        details={"revision": str(target.id), "status": target.status},
    )


def pin_or_unpin(target: Revision, *, pin: bool) -> Conflict | None:
    """Pinning a pinned revision, or unpinning one that is not, changes nothing."""
    if target.pinned != pin:
        return None
    state = f"already {retention.pin_note(target)}" if pin else "not pinned"
    return Conflict(
        f"revision {target.short_id} is {state}; nothing changed",
        details={"revision": str(target.id), "pinned": target.pinned},
        code="already_pinned" if pin else "not_pinned",
    )


def rollout(app: App) -> Conflict | None:
    """A rollout restarts Current's runners: there must be a Current, and one that serves."""
    if app.current_revision_id is None:
        return Conflict(f"app {app.name!r} has no current revision to roll out")
    if app.current_revision.status == RevisionStatus.SUSPENDED:
        return Conflict(
            f"revision {app.current_revision.short_id}, Current of {app.name}, is Suspended "
            "and has no runners to restart; resume it before rolling out",
            details={"revision": str(app.current_revision_id), "status": RevisionStatus.SUSPENDED},
        )
    return None


def release(app: App) -> Conflict | None:
    if app.held:
        return None
    return Conflict(
        f"app {app.name!r} is not held; there is no hold to release",
        details={"app": app.name, "held": False},
        code="not_held",
    )


def scale(app: App) -> Conflict | None:
    if app.settings:
        return None
    return Conflict(f"app {app.name!r} has never been deployed successfully; deploy it first")


def runner(found: dict[str, Any]) -> Conflict | None:
    """A runner that already ended cannot be stopped or killed."""
    if found.get("state") not in GONE:
        return None
    return Conflict(f"runner {found['id']} is already {found['state']}")


def of_revision(
    kind: OperationKind, app: App, target: Revision, *, thorough: bool = True
) -> Conflict | None:
    """The refusal of an operation of `kind` on `target`, for the dashboard's actions."""
    if kind == OperationKind.SET_REV:
        return set_rev(app, target, thorough=thorough)
    if kind == OperationKind.DELETE_REV:
        return delete_rev(app, target, Source.DASHBOARD, thorough=thorough)
    if kind in (OperationKind.SUSPEND, OperationKind.RESUME):
        return suspend_or_resume(target, suspend=kind == OperationKind.SUSPEND)
    if kind in (OperationKind.PIN, OperationKind.UNPIN):
        return pin_or_unpin(target, pin=kind == OperationKind.PIN)
    return None


def of_app(kind: OperationKind, app: App) -> Conflict | None:
    """The refusal of an operation of `kind` on the app as a whole."""
    rule = {
        OperationKind.ROLLOUT: rollout,
        OperationKind.RELEASE: release,
        OperationKind.SCALE: scale,
    }.get(kind)
    return rule(app) if rule else None
