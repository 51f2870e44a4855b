"""One function per change to an app, each recorded as an operation; the API's views call
them with checked input and turn what they return into an answer.

Every one goes through `recorded`: a repeated Idempotency-Key replays the original
operation (nothing applies twice), else the change runs in one transaction, with the app's
row locked by the change itself, and a concurrent request with the same key that won the
race is replayed too. No HTTP here: the views own status codes and JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction

from dashboard.controlplane import (
    bundles,
    events,
    executors,
    operations,
    parameters,
    refusals,
    retention,
    rules,
    runtime_client,
)
from dashboard.controlplane.errors import BadRequest, Conflict, Forbidden, NotFound, Unavailable
from dashboard.controlplane.models import (
    App,
    AuthMode,
    Network,
    Operation,
    OperationKind,
    Revision,
    RevisionStatus,
)
from dashboard.controlplane.operations import Actor
from dashboard.controlplane.revisions import get_app, resolve

QUICK_DEADLINE = timedelta(seconds=60)
SLACK = timedelta(minutes=2)


@dataclass
class Done:
    """A mutation's outcome: its operation, whether it is a replay of an earlier request, and
    what the answer shows besides (the revision or app as they are now, values applied)."""

    operation: Operation
    replayed: bool = False
    app: App | None = None
    revision: Revision | None = None
    values: dict[str, Any] = field(default_factory=dict)


def _quick(
    app: App,
    kind: OperationKind,
    actor: Actor,
    reason: str,
    params: dict[str, Any],
    revision: Revision | None = None,
) -> Operation:
    """The operation of a quick mutation: done in the request, still recorded."""
    return operations.create(
        app,
        kind,
        actor,
        reason=reason,
        params=params,
        revision=revision,
        deadline=QUICK_DEADLINE,
        running=True,
    )


def replayed(actor: Actor) -> Done | None:
    """The operation an earlier request with this Idempotency-Key created, if any."""
    earlier = operations.replay(actor)
    if earlier is None:
        return None
    revision = earlier.revision if earlier.kind == OperationKind.DEPLOY else None
    return Done(earlier, replayed=True, app=earlier.app, revision=revision)


def recorded(actor: Actor, change: Callable[[], Done]) -> Done:
    """Replay, or run `change` in one transaction (it locks the app first)."""
    earlier = replayed(actor)
    if earlier is not None:
        return earlier
    try:
        with transaction.atomic():
            return change()
    except operations.Replayed as exc:
        return Done(exc.operation, replayed=True)


def started(done: Done) -> Done:
    """A queued operation the task queue could not take is a 503, saying nothing started."""
    op = done.operation
    if (
        not done.replayed
        and op.state == "failed"
        and op.error.startswith(operations.QUEUE_UNAVAILABLE)
    ):
        raise Unavailable(
            f"{op.error}; the {op.get_kind_display()} was not started",
            details={"operation": str(op.id)},
            code="queue_unavailable",
        )
    return done


def auth_mode_refusal(app: App, actor: Actor, requested: str, *, outcome: str) -> Forbidden | None:
    """Widening an app's auth mode is its owner's or an admin's call (rules.py)."""
    if not requested:
        return None
    refusal = rules.auth_mode_refusal(
        app.auth_mode, requested, owner=app.owner_id == actor.user.pk, role=actor.role
    )
    if refusal is None:
        return None
    return Forbidden(
        f"{refusal}; {outcome}",
        details={"app": app.name, "auth_mode": app.auth_mode, "requested": requested},
        code="auth_mode_widening_forbidden",
    )


# -- deploy -------------------------------------------------------------------------------


def deploy(
    name: str,
    actor: Actor,
    bundle: bundles.Bundle,
    *,
    entrypoint: str,
    strategy: str,
    reset_scale: bool,
    promote: bool,
    message: str,
    annotations: dict[str, str],
    auth_mode: str,
) -> Done:
    """Create a Deploying revision from a staged bundle and queue its deploy."""
    created: list[Revision] = []

    def change() -> Done:
        try:
            with transaction.atomic():
                app, _ = App.objects.get_or_create(
                    name=name,
                    defaults={"owner": actor.user, "auth_mode": auth_mode or AuthMode.PRIVATE},
                )
        except IntegrityError:
            app = App.objects.get(name=name)  # A concurrent first deploy created it.
        # Lock the alias first, as every other mutation does: the inserts below take a
        # key-share lock on it, and mixing those with another request's FOR UPDATE while
        # both wait on the one-active-operation index deadlocks (a 500).
        app = App.objects.select_for_update().get(pk=app.pk)
        if refusal := auth_mode_refusal(app, actor, auth_mode, outcome="nothing was deployed"):
            raise refusal
        if auth_mode and app.auth_mode != auth_mode:
            app.auth_mode = auth_mode
            app.save(update_fields=["auth_mode", "updated_at"])
        revision = Revision.objects.create(
            app=app,
            entrypoint=entrypoint,
            bundle_sha256=bundle.sha256,
            bundle_size=bundle.size,
            message=message,
            annotations=annotations,
            deployed_by=actor.user,
        )
        created.append(revision)
        op = operations.create(
            app,
            OperationKind.DEPLOY,
            actor,
            reason=message,
            params={
                "revision": str(revision.id),
                "entrypoint": entrypoint,
                "strategy": strategy,
                "reset_scale": reset_scale,
                "promote": promote,
                "auth_mode": auth_mode or None,
                "bundle_sha256": bundle.sha256,
                "bundle_size": bundle.size,
            },
            revision=revision,
            deadline=timedelta(seconds=executors.IMPORT_TIMEOUT + 3600) + SLACK,
        )
        operations.step(
            op, f"bundle received ({bundle.size} bytes); revision {revision.short_id} is Deploying"
        )
        bundles.install(bundle, revision.bundle_dir)
        operations.submit(op)
        return Done(op, app=app, revision=revision)

    try:
        done = recorded(actor, change)
    except BaseException:
        for revision in created:
            bundles.remove(revision.bundle_dir)
        raise
    finally:
        bundles.discard(bundle)  # Nothing left once installed; a refusal leaves nothing.
    if done.revision is not None:
        done.revision.refresh_from_db()
    return started(done)


# -- set-rev, rollout, delete-rev ------------------------------------------------------------


def set_rev(
    app_name: str, actor: Actor, ref: str, *, strategy: str, reason: str, expected_current: Any
) -> Done:
    """Make `ref` Current: `rolling` in the worker (the target's runners start first),
    `recreate` here and now (the alias moves in this request; the next request cold-starts)."""

    def change() -> Done:
        found = get_app(app_name, lock=True)
        target = resolve(found, ref)
        operations.check_expected_current(found, expected_current)
        if refusal := refusals.set_rev(found, target):
            raise refusal
        # A rollback is never blocked: whatever runs on the app stops at its next safe
        # point, and it can no longer move the alias from the moment this commits.
        superseded = operations.supersede(found, actor, target)
        startup = (target.code_settings or {}).get("startup_timeout", 600)
        op = operations.create(
            found,
            OperationKind.SET_REV,
            actor,
            reason=reason,
            params={
                "revision": str(target.id),
                "strategy": strategy,
                "from_revision": str(found.current_revision_id)
                if found.current_revision_id
                else None,
                "superseded": str(superseded.id) if superseded else None,
            },
            revision=target,
            deadline=timedelta(seconds=startup) + SLACK,
            running=strategy == "recreate",
        )
        if superseded is not None:
            operations.step(
                op,
                f"superseded {superseded.get_kind_display()} operation {superseded.id} "
                f"({superseded.get_state_display().lower()}): it stops at its next safe point",
            )
        if strategy != "recreate":
            operations.submit(op)
            return Done(op, app=found, revision=target)
        new_settings = parameters.for_set_rev(target.code_settings, found.settings)
        state = executors.move_alias(op, target, new_settings, deploy=False, locked_app=found)
        operations.step(op, "recreate: no runner started; the next request cold-starts it")
        operations.succeed(op, {"revision": str(target.id), "settings": new_settings})
        return Done(op, app=found, revision=target, values={"state": state})

    done = recorded(actor, change)
    if done.replayed or strategy != "recreate":
        return started(done)
    executors.sync_runtime(done.operation, done.app.name, done.values.pop("state"))
    # The last step, as "done" is for operations the worker runs.
    operations.step(done.operation, f"done: {done.app.name} serves {done.revision.short_id}")
    return done


def rollout(
    app_name: str, actor: Actor, *, force: bool, reason: str, expected_current: Any
) -> Done:
    def change() -> Done:
        found = get_app(app_name, lock=True)
        operations.check_expected_current(found, expected_current)
        if refusal := refusals.rollout(found):
            raise refusal
        live = found.settings
        budget = live.get("startup_timeout", 600) + live.get("request_timeout", 3600)
        op = operations.create(
            found,
            OperationKind.ROLLOUT,
            actor,
            reason=reason,
            params={"force": force},
            revision=found.current_revision,
            deadline=timedelta(seconds=budget) + SLACK,
        )
        operations.submit(op)
        return Done(op, app=found)

    return started(recorded(actor, change))


def delete_revision(
    app_name: str, actor: Actor, ref: str, *, reason: str, expected_current: Any
) -> Done:
    def change() -> Done:
        found = get_app(app_name, lock=True)
        target = resolve(found, ref)
        operations.check_expected_current(found, expected_current)
        if refusal := refusals.delete_rev(found, target, actor.source):
            raise refusal
        op = operations.create(
            found,
            OperationKind.DELETE_REV,
            actor,
            reason=reason,
            params={
                "revision": str(target.id),
                "short_id": target.short_id,
                "status": target.status,
                "message": target.message,
            },
            revision=target,
            deadline=timedelta(minutes=5),
        )
        operations.submit(op)
        return Done(op, app=found)

    return started(recorded(actor, change))


# -- quick operations: done in the request, still recorded -----------------------------------


def _scale_refused(exc: parameters.ParameterError) -> BadRequest:
    return BadRequest(
        f"refused, nothing changed: {exc}", details={"errors": exc.errors}, code="out_of_range"
    )


def scale(app_name: str, actor: Actor, values: dict[str, Any], *, reason: str) -> Done:
    if not values:
        raise BadRequest(
            f"nothing to change: give at least one of {', '.join(parameters.PARAMETERS)}"
        )
    try:
        # Coerced ("5" is 5) before anything records them: History shows what took effect.
        changes = parameters.validate(values)
    except parameters.ParameterError as exc:
        raise _scale_refused(exc) from None

    def change() -> Done:
        found = get_app(app_name, lock=True)
        if refusal := refusals.scale(found):
            raise refusal
        try:
            new_settings, notes = parameters.apply_scale(found.settings, changes)
        except parameters.ParameterError as exc:
            raise _scale_refused(exc) from None
        changed = {
            name: [found.settings.get(name), value]
            for name, value in new_settings.items()
            if found.settings.get(name) != value
        }
        op = _quick(
            found,
            OperationKind.SCALE,
            actor,
            reason,
            changes,
            revision=found.current_revision,
        )
        overrides = sorted(
            set(found.scale_overrides) | {n for n in changes if n in parameters.CODE_SPECIFIC}
        )
        found.settings, found.scale_overrides = new_settings, overrides
        found.save(update_fields=["settings", "scale_overrides", "updated_at"])
        summary = ", ".join(f"{n} {old} → {new}" for n, (old, new) in changed.items())
        operations.step(op, f"scaled: {summary or 'no value changed'}")
        for note in notes:
            operations.step(op, note)
        events.publish_app_changed(found.name)
        operations.succeed(op, {"settings": new_settings, "notes": notes, "changed": changed})
        return Done(op, app=found, values={"settings": new_settings, "notes": notes})

    done = recorded(actor, change)
    if not done.replayed:
        executors.sync_runtime(done.operation, done.app.name, None)
    return done


def suspend_or_resume(
    app_name: str,
    actor: Actor,
    ref: str | None,
    *,
    suspend: bool,
    reason: str,
    expected_current: Any,
) -> Done:
    verb = "suspend" if suspend else "resume"

    def change() -> Done:
        found = get_app(app_name, lock=True)
        operations.check_expected_current(found, expected_current)
        if ref:
            target = resolve(found, ref)
        elif found.current_revision_id:
            target = found.current_revision
        else:
            raise Conflict(
                f"app {found.name!r} has no current revision; name the revision to {verb}"
            )
        target = Revision.objects.select_for_update().get(pk=target.pk)
        if refusal := refusals.suspend_or_resume(target, suspend=suspend):
            raise refusal
        op = _quick(
            found,
            OperationKind.SUSPEND if suspend else OperationKind.RESUME,
            actor,
            reason,
            {"revision": str(target.id)},
            revision=target,
        )
        target.status = RevisionStatus.SUSPENDED if suspend else RevisionStatus.DEPLOYED
        target.save(update_fields=["status"])
        what = f"revision {target.short_id} is {target.get_status_display()}"
        if found.current_revision_id == target.id:
            what += " (Current: the app " + (
                "answers 503 'app suspended')" if suspend else "serves again)"
            )
        operations.step(op, what)
        events.publish_app_changed(found.name)
        operations.succeed(op, {"revision": str(target.id), "status": target.status})
        return Done(op, app=found, revision=target)

    done = recorded(actor, change)
    if done.replayed:
        return done
    op, target = done.operation, done.revision
    if suspend:
        try:
            stopped = runtime_client.stop_revision(str(target.id))
            operations.step(op, f"stopping {len(stopped)} runner(s) of {target.short_id}")
        except runtime_client.FAILURES as exc:
            operations.step(op, f"runtime could not stop its runners ({runtime_client.error(exc)})")
    executors.sync_runtime(op, done.app.name, None)
    return done


def release(app_name: str, actor: Actor, *, reason: str) -> Done:
    def change() -> Done:
        found = get_app(app_name, lock=True)
        if refusal := refusals.release(found):
            raise refusal
        held_by = found.held_operation
        op = _quick(
            found,
            OperationKind.RELEASE,
            actor,
            reason,
            {"held_operation": str(held_by.id) if held_by else None},
            revision=found.current_revision,
        )
        found.held, found.held_at, found.held_operation = False, None, None
        found.save(update_fields=["held", "held_at", "held_operation", "updated_at"])
        current = found.current_revision.short_id if found.current_revision else "none"
        operations.step(
            op,
            f"hold released (set by {held_by.requester_name if held_by else 'unknown'}'s "
            f"rollback); the next deploy of {found.name} becomes Current. Current stays "
            f"{current} until then (set-rev switches now)",
        )
        operations.succeed(op, {"held": False})
        return Done(op, app=found)

    return recorded(actor, change)


def _set_app_field(
    app_name: str, actor: Actor, kind: OperationKind, name: str, value: Any, reason: str
) -> tuple[App, Operation, Any]:
    """One field of an app set under its lock, as a quick operation of `kind`: the app,
    the operation (its step and outcome are the caller's) and the field's value before."""
    found = get_app(app_name, lock=True)
    op = _quick(found, kind, actor, reason, {name: value})
    before = getattr(found, name)
    setattr(found, name, value)
    found.save(update_fields=[name, "updated_at"])
    return found, op, before


def hold_policy(app_name: str, actor: Actor, value: bool, *, reason: str) -> Done:
    def change() -> Done:
        found, op, before = _set_app_field(
            app_name, actor, OperationKind.HOLD_POLICY, "hold_on_rollback", value, reason
        )
        what = "on: a rollback holds" if value else "off: a rollback does not hold"
        unchanged = " (unchanged)" if before == value else ""
        note = " A hold in place stays until released." if found.held and not value else ""
        operations.step(op, f"hold on rollback is {what} {found.name}{unchanged}.{note}")
        operations.succeed(op, {"hold_on_rollback": value})
        return Done(op, app=found)

    return recorded(actor, change)


def network(app_name: str, actor: Actor, value: str, *, reason: str) -> Done:
    """An app's outbound network: admins only, as `outbound` widens what its code reaches."""

    def change() -> Done:
        found, op, before = _set_app_field(
            app_name, actor, OperationKind.NETWORK, "network", value, reason
        )
        what = (
            "outbound: its runners may open outbound connections (never to the host's loopback)"
            if value == Network.OUTBOUND
            else "off: its runners reach no network"
        )
        unchanged = " (unchanged)" if before == value else ""
        operations.step(
            op,
            f"network of {found.name} is {what}{unchanged}. Runners started from now on "
            "have it; running ones keep what they started with.",
        )
        events.publish_app_changed(found.name)
        operations.succeed(op, {"network": value})
        return Done(op, app=found)

    done = recorded(actor, change)
    if not done.replayed:
        executors.sync_runtime(done.operation, done.app.name, None)
    return done


# -- pins and retention ---------------------------------------------------------------------


def pin(app_name: str, actor: Actor, ref: str, *, pin: bool, reason: str) -> Done:
    def change() -> Done:
        found = get_app(app_name, lock=True)
        target = Revision.objects.select_for_update().get(pk=resolve(found, ref).pk)
        if refusal := refusals.pin_or_unpin(target, pin=pin):
            raise refusal
        op = _quick(
            found,
            OperationKind.PIN if pin else OperationKind.UNPIN,
            actor,
            reason,
            {"revision": str(target.id), "short_id": target.short_id},
            revision=target,
        )
        was = retention.pin_note(target)
        target.pinned = pin
        target.pinned_by = actor.user if pin else None
        target.pinned_at = op.created_at if pin else None
        target.save(update_fields=["pinned", "pinned_by", "pinned_at"])
        operations.step(
            op,
            f"revision {target.short_id} is pinned: retention and delete-rev leave it alone"
            if pin
            else f"revision {target.short_id} is no longer pinned (was {was})",
        )
        operations.succeed(op, {"revision": str(target.id), "pinned": pin})
        return Done(op, app=found, revision=target)

    done = recorded(actor, change)
    if not done.replayed:
        done.revision = Revision.objects.select_related("deployed_by", "pinned_by").get(
            pk=done.revision.pk
        )
    return done


def retention_settings(
    app_name: str, actor: Actor, *, keep: int | None, enabled: bool | None, reason: str
) -> Done:
    def change() -> Done:
        found = get_app(app_name, lock=True)
        before = {"keep": found.retention_keep, "enabled": found.retention_enabled}
        after = {
            "keep": before["keep"] if keep is None else keep,
            "enabled": before["enabled"] if enabled is None else enabled,
        }
        op = _quick(
            found,
            OperationKind.RETENTION,
            actor,
            reason,
            {k: v for k, v in (("keep", keep), ("enabled", enabled)) if v is not None},
        )
        found.retention_keep, found.retention_enabled = after["keep"], after["enabled"]
        found.save(update_fields=["retention_keep", "retention_enabled", "updated_at"])
        summary = ", ".join(
            f"{name} {before[name]} → {after[name]}"
            for name in before
            if before[name] != after[name]
        )
        operations.step(
            op,
            f"retention of {found.name}: {summary or 'no value changed'} "
            f"({'on' if after['enabled'] else 'off'}, keeps the newest {after['keep']})",
        )
        operations.succeed(op, {"before": before, "after": after})
        if after["enabled"]:
            # Applied at once in the worker, after this commits (it waits for nobody).
            transaction.on_commit(lambda: retention.schedule(found.pk))
        return Done(op, app=found, values={"retention": after})

    return recorded(actor, change)


# -- runners and cancel ---------------------------------------------------------------------


def runner_operation(
    runner_id: str, actor: Actor, kind: OperationKind, *, replace: bool, reason: str
) -> Done:
    """Stop (gracefully, optionally replacing it first) or kill one runner, in the worker."""
    earlier = replayed(actor)
    if earlier is not None:
        return earlier
    runner = runtime_client.find_runner(runner_id)
    if refusal := refusals.runner(runner):
        raise refusal

    def change() -> Done:
        found = get_app(runner["app"], lock=True)
        op = operations.create(
            found,
            kind,
            actor,
            reason=reason,
            params={"runner": runner_id, "replace": replace, "revision": runner.get("revision")},
            revision=Revision.objects.filter(pk=runner.get("revision")).first(),
            deadline=timedelta(
                seconds=found.settings.get("request_timeout", 3600)
                + found.settings.get("startup_timeout", 600)
            )
            + SLACK,
        )
        operations.submit(op)
        return Done(op, app=found)

    return started(recorded(actor, change))


def cancel(app_name: str, actor: Actor, operation_id: Any, *, reason: str) -> Done:
    """Ask a running operation to stop at its next safe point (not itself an operation)."""
    with transaction.atomic():
        found = get_app(app_name, lock=True)
        op = Operation.objects.filter(pk=operation_id, app=found).first()
        if op is None:
            raise NotFound(
                f"app {found.name!r} has no operation {operation_id}",
                details={"operation": str(operation_id), "app": found.name},
            )
        if refusal := operations.cancel_refusal(op):
            raise refusal
        who = actor.user.get_username()
        operations.request_cancel(
            op, actor, f"cancelled by {who}" + (f": {reason}" if reason else "")
        )
    return Done(op, app=found)
