"""The dashboard's actions: who may run each, when a revision allows it, and how a
confirmed action reaches the control API (called from the Celery task in tasks.py).

The same refusal rules decide which buttons are disabled (and say why) and what the
server refuses, so the page and the server can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings

from dashboard import httpclient
from dashboard.api_client import ApiError, ControlApi
from dashboard.controlplane import parameters
from dashboard.controlplane.models import (
    App,
    Operation,
    OperationKind,
    Revision,
    RevisionStatus,
    Role,
)
from dashboard.web import forms


@dataclass(frozen=True)
class ActionSpec:
    name: str
    title: str
    role: Role
    target: str  # "revision", "runner" or "app": what the dialog is about.
    form: type[forms.ActionForm]
    kind: OperationKind  # The operation the control API records for it.


ACTIONS: dict[str, ActionSpec] = {
    a.name: a
    for a in (
        ActionSpec(
            "rollback",
            "Roll back",
            Role.DEPLOYER,
            "revision",
            forms.RollbackForm,
            OperationKind.SET_REV,
        ),
        ActionSpec(
            "delete",
            "Delete revision",
            Role.ADMIN,
            "revision",
            forms.ActionForm,
            OperationKind.DELETE_REV,
        ),
        ActionSpec(
            "suspend",
            "Suspend revision",
            Role.ADMIN,
            "revision",
            forms.ActionForm,
            OperationKind.SUSPEND,
        ),
        ActionSpec(
            "resume",
            "Resume revision",
            Role.ADMIN,
            "revision",
            forms.ActionForm,
            OperationKind.RESUME,
        ),
        ActionSpec(
            "pin", "Pin revision", Role.DEPLOYER, "revision", forms.ActionForm, OperationKind.PIN
        ),
        ActionSpec(
            "unpin",
            "Unpin revision",
            Role.DEPLOYER,
            "revision",
            forms.ActionForm,
            OperationKind.UNPIN,
        ),
        ActionSpec(
            "retention",
            "Retention settings",
            Role.ADMIN,
            "app",
            forms.RetentionForm,
            OperationKind.RETENTION,
        ),
        ActionSpec(
            "rollout", "Roll out", Role.DEPLOYER, "app", forms.RolloutForm, OperationKind.ROLLOUT
        ),
        ActionSpec("scale", "Scale", Role.DEPLOYER, "app", forms.ScaleForm, OperationKind.SCALE),
        ActionSpec(
            "runner-stop",
            "Stop runner",
            Role.DEPLOYER,
            "runner",
            forms.RunnerStopForm,
            OperationKind.RUNNER_STOP,
        ),
        ActionSpec(
            "runner-kill",
            "Kill runner",
            Role.ADMIN,
            "runner",
            forms.ActionForm,
            OperationKind.RUNNER_KILL,
        ),
    )
}
_BY_KIND = {spec.kind: spec for spec in ACTIONS.values()}


def title(spec: ActionSpec, subject: str) -> str:
    """What the dialog and its progress panel call an action: "Roll back 3f2a9c1e",
    "Kill runner r-7f3a", "Scale" (an app action names no revision)."""
    return f"{spec.title} {subject}" if subject and spec.target != "app" else spec.title


def operation_title(op: Operation) -> str:
    """An operation submitted from the dashboard, titled as its dialog was."""
    spec = _BY_KIND.get(op.kind)
    return title(spec, op.subject) if spec else f"{op.get_kind_display()} {op.subject}".strip()


class ActionFailed(Exception):
    """The control API refused or could not be reached; the message is shown as is."""


def revision_refusal(action: str, app: App, rev: Revision) -> str | None:
    """Why `action` cannot apply to `rev` now, or None if it can."""
    is_current = app.current_revision_id == rev.id
    status = rev.status
    if action == "rollback":
        if is_current:
            return "This is already the Current revision."
        if status == RevisionStatus.FAILED:
            return "A Failed revision can never become Current."
        if status == RevisionStatus.DEPLOYING:
            return "This revision is still deploying."
        if status == RevisionStatus.SUSPENDED:
            return "This revision is suspended: resume it before rolling back to it."
    elif action == "delete":
        if is_current:
            return "The Current revision cannot be deleted: roll back to another one first."
        if rev.pinned:
            return "This revision is pinned: unpin it before deleting it."
        if status == RevisionStatus.DEPLOYING:
            return "This revision is still deploying: wait for it to finish."
    elif action == "suspend":
        if status != RevisionStatus.DEPLOYED:
            return (
                f"Only Deployed revisions can be suspended; this one is {rev.get_status_display()}."
            )
    elif action == "resume" and status != RevisionStatus.SUSPENDED:
        return f"Only Suspended revisions can be resumed; this one is {rev.get_status_display()}."
    elif action == "pin" and rev.pinned:
        return "This revision is already pinned."
    elif action == "unpin" and not rev.pinned:
        return "This revision is not pinned."
    return None


def app_refusal(action: str, app: App) -> str | None:
    if action == "rollout":
        if app.current_revision_id is None:
            return "The app has no Current revision to roll out yet."
        if app.current_revision.status == RevisionStatus.SUSPENDED:
            return "The Current revision is suspended: resume it before rolling out."
    return None


def live_settings(app: App) -> dict[str, Any]:
    """The alias's settings with defaults filled in for any the app never set."""
    return {**parameters.defaults(), **(app.settings or {})}


def rollback_changes(app: App, target: Revision) -> list[dict[str, Any]]:
    """Each parameter now and after a rollback to `target`, per the set-rev rule:
    runtime-tunable values stay on the alias, code-specific ones come from the target."""
    now = live_settings(app)
    code = {**parameters.defaults(), **(target.code_settings or target.settings or {})}
    after = parameters.for_set_rev(code, now)
    return [
        {
            "name": name,
            "kind": param.kind,
            "now": now[name],
            "after": after[name],
            "changed": now[name] != after[name],
        }
        for name, param in parameters.PARAMETERS.items()
    ]


def submit(action: str, app: str, params: dict[str, Any], token: str, key: str) -> str:
    """Send one confirmed action to the control API; return the operation's id.

    `key` is the Idempotency-Key: httpclient resends it on every retry and the API
    answers a repeat with the operation the first call created, so a retried task never
    applies twice.
    """
    api = ControlApi(settings.SWITCHBOARD_API_URL, token, source="dashboard")
    reason = params.get("reason", "")
    try:
        if action == "rollback":
            result = api.set_rev(
                app,
                params["revision"],
                strategy=params["strategy"],
                reason=reason,
                idempotency_key=key,
            )
        elif action == "delete":
            result = api.delete_revision(
                app, params["revision"], reason=reason, idempotency_key=key
            )
        elif action == "suspend":
            result = api.suspend(app, params["revision"], reason=reason, idempotency_key=key)
        elif action == "resume":
            result = api.resume(app, params["revision"], reason=reason, idempotency_key=key)
        elif action == "rollout":
            result = api.rollout(app, force=params["force"], reason=reason, idempotency_key=key)
        elif action == "scale":
            result = api.scale(app, params["values"], reason=reason, idempotency_key=key)
        elif action == "pin":
            result = api.pin(app, params["revision"], reason=reason, idempotency_key=key)
        elif action == "unpin":
            result = api.unpin(app, params["revision"], reason=reason, idempotency_key=key)
        elif action == "retention":
            result = api.set_retention(
                app,
                keep=params["keep"],
                enabled=params["enabled"],
                reason=reason,
                idempotency_key=key,
            )
        elif action == "runner-stop":
            result = api.stop_runner(
                params["runner"], replace=params["replace"], reason=reason, idempotency_key=key
            )
        elif action == "runner-kill":
            result = api.kill_runner(params["runner"], reason=reason, idempotency_key=key)
        else:
            raise ActionFailed(f"Unknown action {action!r}.")
    except ApiError as exc:
        raise ActionFailed(exc.message) from None
    except httpclient.Unavailable as exc:
        raise ActionFailed(
            f"The control API could not be reached ({exc.detail}). Check History before retrying."
        ) from None
    return str(result["operation"]["id"])
