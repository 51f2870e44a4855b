"""The dashboard's actions: who may run each, when a revision allows it, and how a
confirmed action reaches the control API (called from the Celery task in tasks.py).

The control plane's refusal rules (controlplane.refusals) decide which buttons are
disabled (and say why) and what the dialogs and the API refuse, so the page and the
server can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings

from dashboard import httpclient
from dashboard.api_client import ApiError, ControlApi
from dashboard.controlplane import parameters, refusals
from dashboard.controlplane.models import (
    App,
    Operation,
    OperationKind,
    Revision,
    Role,
)
from dashboard.controlplane.operations import alias_move_of
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
            forms.ExpectingForm,
            OperationKind.DELETE_REV,
        ),
        ActionSpec(
            "suspend",
            "Suspend revision",
            Role.ADMIN,
            "revision",
            forms.ExpectingForm,
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
            "release",
            "Release hold",
            Role.DEPLOYER,
            "app",
            forms.ActionForm,
            OperationKind.RELEASE,
        ),
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
    """An operation submitted from the dashboard, titled as its dialog was: a set-rev to a
    newer revision than the Current it replaced is "Switch to", as its dialog said."""
    spec = _BY_KIND.get(op.kind)
    if spec is None:
        return f"{op.get_kind_display()} {op.subject}".strip()
    if op.kind == OperationKind.SET_REV and op.params.get("from_revision"):
        ids = [op.params["from_revision"], op.revision_id or op.params.get("revision")]
        created = {
            str(pk): at
            for pk, at in Revision.objects.filter(pk__in=[i for i in ids if i]).values_list(
                "id", "created_at"
            )
        }
        if set_rev_direction(op, created) == "roll forward":
            return f"Switch to {op.subject}".strip()
    return title(spec, op.subject)


def is_older(revision: Revision, than: Revision) -> bool:
    """Whether `revision` came before `than`, in the order operations.is_rollback uses
    (creation time, then id): a set-rev to an older revision than Current is a rollback,
    to a newer one a roll forward. Compared on rows already loaded: the Versions page asks
    it for every row."""
    return (revision.created_at, str(revision.id)) < (than.created_at, str(than.id))


def switch_word(current: Revision | None, target: Revision) -> str:
    """What a set-rev to `target` is called: "Roll back" to an older revision than
    Current, "Switch to" a newer one (a roll forward)."""
    return "Roll back" if current is None or is_older(target, current) else "Switch to"


class ActionFailed(Exception):
    """The control API refused or could not be reached; the message is shown as is."""


def revision_refusal(action: str, app: App, rev: Revision) -> str | None:
    """Why `action` cannot apply to `rev` now, or None if it can: the control plane's
    refusal (controlplane.refusals), asked without a query per row, for the pages."""
    refusal = refusals.of_revision(ACTIONS[action].kind, app, rev, thorough=False)
    return refusal.message if refusal else None


def app_refusal(action: str, app: App) -> str | None:
    refusal = refusals.of_app(ACTIONS[action].kind, app)
    return refusal.message if refusal else None


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
    # The Current the dialog showed: the API refuses (409 current_changed) if it moved.
    expected = params.get("expected_current") or None
    try:
        if action == "rollback":
            result = api.set_rev(
                app,
                params["revision"],
                strategy=params["strategy"],
                reason=reason,
                expected_current=expected,
                idempotency_key=key,
            )
        elif action == "delete":
            result = api.delete_revision(
                app,
                params["revision"],
                reason=reason,
                expected_current=expected,
                idempotency_key=key,
            )
        elif action == "suspend":
            result = api.suspend(
                app,
                params["revision"],
                reason=reason,
                expected_current=expected,
                idempotency_key=key,
            )
        elif action == "resume":
            result = api.resume(app, params["revision"], reason=reason, idempotency_key=key)
        elif action == "rollout":
            result = api.rollout(
                app,
                force=params["force"],
                reason=reason,
                expected_current=expected,
                idempotency_key=key,
            )
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
        elif action == "release":
            result = api.release(app, reason=reason, idempotency_key=key)
        elif action == "cancel":
            # Cancelling creates no operation: the answer is the cancelled one.
            result = api.cancel_operation(app, params["operation"], reason=reason)
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


def cli_equivalent(action: str, app: str, params: dict[str, Any]) -> str:
    """The `switchboard` command doing what a dashboard action does, shown when the
    dashboard's worker does not take the action (the CLI goes to the control API
    directly)."""
    rev = params.get("revision", "")[:8]
    expect = (
        f" --expect-current {params['expected_current'][:8]}"
        if params.get("expected_current")
        else ""
    )
    commands = {
        "rollback": f"switchboard apps set-rev {app} {rev} --strategy {params.get('strategy')}"
        + expect,
        "delete": f"switchboard apps delete-rev {app} {rev}{expect}",
        "suspend": f"switchboard apps suspend {app} {rev}{expect}",
        "resume": f"switchboard apps resume {app} {rev}",
        "rollout": f"switchboard apps rollout {app}"
        + (" --force" if params.get("force") else "")
        + expect,
        "scale": f"switchboard apps scale {app} "
        + " ".join(
            f"--{name.replace('_', '-')} {value}"
            for name, value in params.get("values", {}).items()
        ),
        "release": f"switchboard apps release {app}",
        "runner-stop": f"switchboard runners stop {params.get('runner')}"
        + (" --replace" if params.get("replace") else ""),
        "runner-kill": f"switchboard runners kill {params.get('runner')}",
    }
    return commands.get(action, "").strip()


@dataclass(frozen=True)
class CurrentStory:
    """Who made Current what it is, when, why and how: what on-call reads first."""

    since: Any  # datetime | None
    by: str
    how: str  # "deploy", "rollback", "roll forward" or the operation's kind
    reason: str
    source: str


def current_story(app: App) -> CurrentStory | None:
    """The story of `app`'s Current, from the operation that moved the alias last
    (operations.alias_move_of, the rule the API's 409 current_changed also uses)."""
    if app.current_revision_id is None:
        return None
    move = app.current_operation if app.current_operation_id else alias_move_of(app)
    if move is None:
        return CurrentStory(app.current_since, "", "", "", "")
    how = move.get_kind_display()
    if move.kind == OperationKind.DEPLOY:
        how = "deploy"
    elif move.kind == OperationKind.SET_REV and app.previous_revision_id:
        previous = app.previous_revision
        how = "rollback" if is_older(app.current_revision, previous) else "roll forward"
    since = app.current_since or move.finished_at or move.started_at or move.created_at
    return CurrentStory(since, move.requester_name, how, move.reason, move.source)


def operation_words(op: Operation, created: dict[Any, Any]) -> str:
    """An operation in the words History uses: "rollback to 1a2b3c4d from 5e6f7a8b",
    "roll forward to …", "deploy 1a2b3c4d". `created` maps revision ids to their
    creation time, loaded once for the whole page."""
    subject = op.subject
    if op.kind == OperationKind.DEPLOY:
        return f"deploy {subject}".strip()
    if op.kind == OperationKind.SET_REV:
        word = set_rev_direction(op, created)
        if word:
            source = str(op.params["from_revision"])
            return f"{word} to {subject} from {source.replace('-', '')[:8]}"
        return f"set-rev to {subject}"
    return f"{op.get_kind_display()} {subject}".strip()


def set_rev_direction(op: Operation, created: dict[Any, Any]) -> str | None:
    """ "rollback" or "roll forward" for a set-rev whose two revisions are in `created`
    (revision id -> creation time), or None when that is not known."""
    source = op.params.get("from_revision")
    target_id = op.revision_id or op.params.get("revision")
    if not (source and target_id and str(source) in created and str(target_id) in created):
        return None
    older = (created[str(target_id)], str(target_id)) < (created[str(source)], str(source))
    return "rollback" if older else "roll forward"
