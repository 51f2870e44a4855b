"""The control API: one small function view per URL; the logic lives in plain modules."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import OuterRef, Subquery
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse

from dashboard import httpclient
from dashboard.controlplane import (
    bundles,
    diff,
    events,
    executors,
    health,
    operations,
    parameters,
    retention,
    rules,
    runtime_client,
)
from dashboard.controlplane.api import schemas as S
from dashboard.controlplane.api.auth import api_view, public_view
from dashboard.controlplane.api.contract import TEXT, document
from dashboard.controlplane.api.serializers import (
    app_json,
    operation_json,
    parameters_json,
    revision_json,
)
from dashboard.controlplane.errors import (
    BadRequest,
    Conflict,
    ControlError,
    Forbidden,
    NotFound,
    TooLarge,
    Unavailable,
)
from dashboard.controlplane.models import (
    App,
    AuthMode,
    Network,
    Operation,
    OperationKind,
    Revision,
    RevisionStatus,
    Role,
)
from dashboard.controlplane.revisions import get_app, resolve

STRATEGIES = ("rolling", "recreate")

SCALE_FIELDS = (*parameters.PARAMETERS, "reason")
# What app_json reads besides the app row: Current, Previous, and who set Current and the hold.
APP_RELATED = (
    "current_revision__deployed_by",
    "current_revision__pinned_by",
    "owner",
    "previous_revision",
    "current_operation",
    "held_operation",
)
MAX_PAGE_SIZE = rules.MAX_PAGE_SIZE
QUICK_DEADLINE = timedelta(seconds=60)
SLACK = timedelta(minutes=2)


# -- request helpers ------------------------------------------------------------------


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if value is None or value == "":
        return False
    if isinstance(value, str) and value.lower() in (
        "true",
        "1",
        "yes",
        "on",
        "false",
        "0",
        "no",
        "off",
    ):
        return value.lower() in ("true", "1", "yes", "on")
    raise BadRequest(f"{name} must be true or false, got {value!r}")


def _text(value: Any, name: str, *, limit: int = 5000) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string")
    if len(value) > limit:
        raise BadRequest(f"{name} is longer than {limit} characters")
    return value


def _strategy(value: Any) -> str:
    strategy = value or "rolling"
    if strategy not in STRATEGIES:
        raise BadRequest(f"strategy must be rolling or recreate, got {strategy!r}")
    return strategy


def _int_param(request: HttpRequest, name: str, default: int, low: int, high: int) -> int:
    raw = request.GET.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise BadRequest(f"{name}={value} is out of range; allowed: {low}–{high}")
    return value


def _page(request: HttpRequest) -> tuple[int, int]:
    return (
        _int_param(request, "page", 1, 1, 10**6),
        _int_param(request, "page_size", 50, 1, MAX_PAGE_SIZE),
    )


def _paginate(qs, page: int, size: int) -> tuple[list, int, int | None]:
    count = qs.count()
    items = list(qs[(page - 1) * size : page * size])
    return items, count, page + 1 if page * size < count else None


def _operation_answer(op: Operation, **extra: Any) -> JsonResponse:
    """202 while the operation runs, 200 once it finished (quick ones, replays)."""
    op = Operation.objects.select_related("app").prefetch_related("steps").get(pk=op.pk)
    status = 200 if op.is_finished else 202
    return JsonResponse({"operation": operation_json(op), **extra}, status=status)


def _replayed(request: HttpRequest) -> JsonResponse | None:
    earlier = operations.replay(request.actor)
    if earlier is None:
        return None
    extra: dict[str, Any] = {"replayed": True}
    if earlier.kind == OperationKind.DEPLOY and earlier.revision is not None:
        extra["revision"] = revision_json(earlier.revision, earlier.app)
    return _operation_answer(earlier, **extra)


def _queued_or_unavailable(op: Operation, **extra: Any) -> JsonResponse:
    if op.state == "failed" and op.error.startswith(operations.QUEUE_UNAVAILABLE):
        raise Unavailable(
            f"{op.error}; the {op.get_kind_display()} was not started",
            details={"operation": str(op.id)},
            code="queue_unavailable",
        )
    return _operation_answer(op, **extra)


def _runtime_unavailable(exc: Exception) -> Unavailable:
    return Unavailable(f"runtime unavailable: {exc}", code="runtime_unavailable")


def _summary(error: str, limit: int = 160) -> str:
    """The first line of a recorded error: a one-line answer, the whole text in details."""
    line = (error.strip().splitlines() or ["no error recorded"])[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _check_can_become_current(app: App, target: Revision) -> None:
    if target.status == RevisionStatus.FAILED:
        raise Conflict(
            f"revision {target.short_id} is Failed ({_summary(target.error)}); "
            "a Failed revision can never become Current",
            details={"revision": str(target.id), "status": target.status, "error": target.error},
        )
    if target.status == RevisionStatus.SUSPENDED:
        raise Conflict(
            f"revision {target.short_id} is Suspended; resume it before making it Current",
            details={"revision": str(target.id), "status": target.status},
        )
    if target.status == RevisionStatus.DEPLOYING:
        raise Conflict(
            f"revision {target.short_id} is still Deploying; only a Deployed revision can "
            "become Current",
            details={"revision": str(target.id), "status": target.status},
        )
    if app.current_revision_id == target.id:
        raise Conflict(
            f"revision {target.short_id} is already Current for {app.name}",
            details={"revision": str(target.id)},
        )


def _tell_runtime(op: Operation, app_name: str, state: dict[str, Any] | None = None) -> None:
    executors.sync_runtime(op, app_name, state)


# -- reads ----------------------------------------------------------------------------


@api_view(GET=Role.VIEWER, answers={"GET": {200: S.Me}}, summary="Who the token is")
def me(request: HttpRequest) -> JsonResponse:
    user = request.actor.user
    return JsonResponse(
        {
            "username": user.get_username(),
            "email": user.email,
            "role": request.actor.role,
            "source": request.actor.source,
        }
    )


@api_view(GET=Role.VIEWER, answers={"GET": {200: S.AppList}}, summary="Every app")
def apps(request: HttpRequest) -> JsonResponse:
    last_op = Operation.objects.filter(app=OuterRef("pk")).order_by("-created_at").values("id")
    rows = list(
        App.objects.select_related(*APP_RELATED).annotate(last_operation_id=Subquery(last_op[:1]))
    )
    ops = Operation.objects.select_related("app").in_bulk(
        [a.last_operation_id for a in rows if a.last_operation_id]
    )
    healths = health.for_apps(rows)  # One call to the runtime for every app.
    return JsonResponse(
        {
            "apps": [
                {
                    **app_json(a, last_operation=ops.get(a.last_operation_id)),
                    "health": healths[a.name],
                }
                for a in rows
            ]
        }
    )


@api_view(GET=Role.VIEWER, answers={"GET": {200: S.AppDetail}}, summary="One app")
def app_detail(request: HttpRequest, app: str) -> JsonResponse:
    found = App.objects.select_related(*APP_RELATED).filter(name=app).first()
    if found is None:
        raise NotFound(f"no app named {app!r}", details={"app": app})
    last = found.operations.select_related("app").first()
    data = app_json(found, last_operation=last)
    data["revision_count"] = found.revisions.count()
    data["parameters"] = parameters_json()
    data["health"] = health.for_app(found)
    return JsonResponse(data)


@api_view(GET=Role.VIEWER, answers={"GET": {200: S.AppHealth}}, summary="Is Current serving well?")
def app_health(request: HttpRequest, app: str) -> JsonResponse:
    """Current's and Previous's traffic over the last five minutes and Current's runners
    (controlplane/health.py); "unavailable" when the runtime cannot be asked, never a 5xx."""
    found = get_app(app)
    return JsonResponse({"app": found.name, **health.for_app(found)})


@api_view(
    GET=Role.VIEWER,
    POST=Role.DEPLOYER,
    form=S.DeployForm,
    query=S.RevisionQuery,
    answers={
        "GET": {200: S.RevisionPage},
        "POST": {200: S.DeployAnswer, 202: S.DeployAnswer},
    },
    summary={"GET": "The app's revisions, newest first", "POST": "Deploy a bundle"},
)
def revisions(request: HttpRequest, app: str) -> JsonResponse:
    if request.method == "POST":
        return _deploy(request, app)
    found = get_app(app)
    qs = Revision.objects.filter(app=found).select_related("deployed_by", "pinned_by")
    status = request.GET.get("status", "").strip().lower()
    if status:
        if status not in RevisionStatus.values:
            raise BadRequest(
                f"status must be one of {', '.join(RevisionStatus.values)}, got {status!r}"
            )
        qs = qs.filter(status=status)
    page, size = _page(request)
    items, count, next_page = _paginate(qs.order_by("-created_at", "-id"), page, size)
    return JsonResponse(
        {
            "revisions": [revision_json(r, found) for r in items],
            "count": count,
            "page": page,
            "page_size": size,
            "next": next_page,
        }
    )


@api_view(
    GET=Role.VIEWER,
    DELETE=Role.ADMIN,
    body=S.DeleteRevisionBody,
    answers={"GET": {200: S.Revision}, "DELETE": {200: S.OperationAnswer, 202: S.OperationAnswer}},
    summary={"GET": "One revision", "DELETE": "Delete a revision (delete-rev)"},
)
def revision_detail(request: HttpRequest, app: str, rev: str) -> JsonResponse:
    if request.method == "DELETE":
        return _delete_revision(request, app, rev)
    found = get_app(app)
    return JsonResponse(revision_json(resolve(found, rev), found))


@api_view(
    GET=Role.VIEWER,
    query=S.PageQuery,
    answers={"GET": {200: S.OperationPage}},
    summary="The app's History",
)
def app_operations(request: HttpRequest, app: str) -> JsonResponse:
    found = get_app(app)
    page, size = _page(request)
    qs = found.operations.select_related("app").prefetch_related("steps").order_by("-created_at")
    items, count, next_page = _paginate(qs, page, size)
    return JsonResponse(
        {
            "operations": [operation_json(op) for op in items],
            "count": count,
            "page": page,
            "page_size": size,
            "next": next_page,
        }
    )


@api_view(GET=Role.VIEWER, answers={"GET": {200: S.Operation}}, summary="One operation")
def operation_detail(request: HttpRequest, operation_id: str) -> JsonResponse:
    try:
        key = uuid.UUID(operation_id)
    except ValueError:
        raise BadRequest(f"{operation_id!r} is not an operation id (a UUID)") from None
    op = Operation.objects.select_related("app").prefetch_related("steps").filter(pk=key).first()
    if op is None:
        raise NotFound(f"no operation {operation_id}")
    return JsonResponse(operation_json(op))


@api_view(GET=Role.VIEWER, answers={"GET": {200: S.RunnerList}}, summary="The app's runners")
def app_runners(request: HttpRequest, app: str) -> JsonResponse:
    found = get_app(app)
    try:
        runners = runtime_client.list_runners(app=found.name)
    except httpclient.Unavailable as exc:
        raise _runtime_unavailable(exc) from None
    except runtime_client.RuntimeError_ as exc:
        raise Unavailable(f"the runtime refused: {exc}", code="runtime_error") from None
    return JsonResponse({"runners": runners})


@api_view(GET=Role.VIEWER, query=S.LogsQuery, answers={"GET": {200: TEXT}}, summary="Runner logs")
def app_logs(request: HttpRequest, app: str) -> HttpResponse:
    found = get_app(app)
    tail = _int_param(request, "tail", 200, 1, 10000)
    rev = request.GET.get("revision", "").strip()
    runner = request.GET.get("runner", "").strip()
    query: dict[str, Any] = {"tail": tail}
    if rev:
        query["revision"] = str(resolve(found, rev).id)
    else:
        query["app"] = found.name
        if runner:
            query["runner"] = runner
    try:
        text = runtime_client.logs(**query)
    except httpclient.Unavailable as exc:
        raise _runtime_unavailable(exc) from None
    except runtime_client.RuntimeError_ as exc:
        if exc.status == 404:
            raise NotFound(str(exc)) from None
        raise Unavailable(f"the runtime refused: {exc}", code="runtime_error") from None
    if not isinstance(text, str):
        text = json.dumps(text)
    return HttpResponse(text, content_type="text/plain; charset=utf-8")


@public_view(S.Index, "The API's root")
def index(request: HttpRequest) -> JsonResponse:
    # Public, like the document it points to: what someone opening the API's root needs.
    return JsonResponse(
        {
            "name": "Switchboard control API",
            "version": "v1",
            "openapi": request.build_absolute_uri(reverse("api-openapi")),
        }
    )


@public_view(S.Document, "This document")
def openapi(request: HttpRequest) -> JsonResponse:
    # Public on purpose: the document describes the API, it reveals no state.
    return JsonResponse(document())


# -- deploy ---------------------------------------------------------------------------


def _annotations(raw: str) -> dict[str, str]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"annotations must be a JSON object of strings: {exc}") from None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise BadRequest("annotations must be a JSON object mapping strings to strings")
    if len(value) > 50 or any(len(k) > 100 or len(v) > 1000 for k, v in value.items()):
        raise BadRequest("at most 50 annotations, keys up to 100 and values up to 1000 characters")
    return value


def _deploy(request: HttpRequest, name: str) -> JsonResponse:
    earlier = _replayed(request)
    if earlier is not None:
        return earlier
    limit = settings.MAX_BUNDLE_BYTES
    if int(request.META.get("CONTENT_LENGTH") or 0) > limit + 1024 * 1024:
        raise TooLarge(f"the upload is larger than the {limit}-byte bundle limit")
    if bad_name := rules.app_name_error(name):
        raise BadRequest(bad_name, details={"app": name})
    upload = request.FILES.get("bundle")
    if upload is None:
        raise BadRequest("no bundle: send the tar.gz as multipart field 'bundle'")
    if upload.size > limit:
        raise TooLarge(
            f"bundle is {upload.size} bytes; the most allowed is {limit}",
            details={"size": upload.size, "max": limit},
        )
    entrypoint = _text(request.POST.get("entrypoint"), "entrypoint", limit=300)
    if not entrypoint:
        raise BadRequest("entrypoint is required, e.g. app.py::MyApp")
    strategy = _strategy(request.POST.get("strategy"))
    reset_scale = _bool(request.POST.get("reset_scale"), "reset_scale")
    promote = _bool(request.POST.get("promote"), "promote")
    message = _text(request.POST.get("message"), "message")
    annotations = _annotations(request.POST.get("annotations", ""))
    auth_mode = request.POST.get("auth_mode", "")
    if auth_mode and auth_mode not in AuthMode.values:
        raise BadRequest(
            f"auth_mode must be one of {', '.join(AuthMode.values)}, got {auth_mode!r}"
        )
    # Checked and unpacked into a private staging directory before the app's lock and the
    # transaction below: a slow or hostile bundle holds up nobody else.
    bundle = bundles.stage(upload, entrypoint)

    actor = request.actor
    revision = None
    try:
        with transaction.atomic():
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
            if auth_mode and (
                refusal := rules.auth_mode_refusal(
                    app.auth_mode, auth_mode, owner=app.owner_id == actor.user.pk, role=actor.role
                )
            ):
                raise Forbidden(
                    f"{refusal}; nothing was deployed",
                    details={"app": app.name, "auth_mode": app.auth_mode, "requested": auth_mode},
                    code="auth_mode_widening_forbidden",
                )
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
                op,
                f"bundle received ({bundle.size} bytes); revision {revision.short_id} is Deploying",
            )
            bundles.install(bundle, revision.bundle_dir)
            operations.submit(op)
    except operations.Replayed as exc:
        return _operation_answer(exc.operation, replayed=True)
    except BaseException:
        if revision is not None:
            bundles.remove(revision.bundle_dir)
        raise
    finally:
        bundles.discard(bundle)  # Nothing left once installed; a refusal leaves nothing.
    revision.refresh_from_db()
    return _queued_or_unavailable(op, revision=revision_json(revision, app))


# -- set-rev, rollout, delete-rev ----------------------------------------------------------


@api_view(
    POST=Role.DEPLOYER,
    body=S.SetRevBody,
    answers={"POST": {200: S.OperationAnswer, 202: S.OperationAnswer}},
    summary="Make a revision Current",
)
def set_rev(request: HttpRequest, app: str) -> JsonResponse:
    body = request.input
    ref = body.get("revision")
    if not ref or not isinstance(ref, str):
        raise BadRequest("revision is required: a full id or a unique prefix of 8+ characters")
    strategy = _strategy(body.get("strategy"))
    reason = _text(body.get("reason"), "reason")
    earlier = _replayed(request)
    if earlier is not None:
        return earlier
    try:
        with transaction.atomic():
            found = get_app(app, lock=True)
            target = resolve(found, ref)
            operations.check_expected_current(found, body.get("expected_current"))
            _check_can_become_current(found, target)
            deleting = Operation.objects.filter(
                revision=target, kind=OperationKind.DELETE_REV, finished_at__isnull=True
            ).first()
            if deleting is not None:
                raise Conflict(
                    f"revision {target.short_id} is being deleted by delete-rev operation "
                    f"{deleting.id}, still in progress; it cannot become Current",
                    details={"operation": str(deleting.id), "kind": deleting.kind},
                    code="operation_in_progress",
                )
            # A rollback is never blocked: whatever runs on the app stops at its next safe
            # point, and it can no longer move the alias from the moment this commits.
            superseded = operations.supersede(found, request.actor, target)
            startup = (target.code_settings or {}).get("startup_timeout", 600)
            op = operations.create(
                found,
                OperationKind.SET_REV,
                request.actor,
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
            if strategy == "recreate":
                # Quick: switch in this request so the gateway routes to the target at once.
                new_settings = parameters.for_set_rev(target.code_settings, found.settings)
                state = executors.move_alias(
                    op, target, new_settings, deploy=False, locked_app=found
                )
                operations.step(op, "recreate: no runner started; the next request cold-starts it")
                operations.succeed(op, {"revision": str(target.id), "settings": new_settings})
            else:
                operations.submit(op)
    except operations.Replayed as exc:
        return _operation_answer(exc.operation, replayed=True)
    if strategy == "recreate":
        _tell_runtime(op, found.name, state)
        # The last step, as "done" is for operations the worker runs.
        operations.step(op, f"done: {found.name} serves {target.short_id}")
        return _operation_answer(op)
    return _queued_or_unavailable(op)


@api_view(
    POST=Role.DEPLOYER,
    body=S.RolloutBody,
    answers={"POST": {200: S.OperationAnswer, 202: S.OperationAnswer}},
    summary="Restart Current's runners",
)
def rollout(request: HttpRequest, app: str) -> JsonResponse:
    body = request.input
    force = _bool(body.get("force"), "force")
    reason = _text(body.get("reason"), "reason")
    earlier = _replayed(request)
    if earlier is not None:
        return earlier
    try:
        with transaction.atomic():
            found = get_app(app, lock=True)
            operations.check_expected_current(found, body.get("expected_current"))
            if found.current_revision_id is None:
                raise Conflict(f"app {found.name!r} has no current revision to roll out")
            live = found.settings
            budget = live.get("startup_timeout", 600) + live.get("request_timeout", 3600)
            op = operations.create(
                found,
                OperationKind.ROLLOUT,
                request.actor,
                reason=reason,
                params={"force": force},
                revision=found.current_revision,
                deadline=timedelta(seconds=budget) + SLACK,
            )
            operations.submit(op)
    except operations.Replayed as exc:
        return _operation_answer(exc.operation, replayed=True)
    return _queued_or_unavailable(op)


def _delete_revision(request: HttpRequest, app: str, rev: str) -> JsonResponse:
    reason = _text(request.input.get("reason"), "reason")
    earlier = _replayed(request)
    if earlier is not None:
        return earlier
    try:
        with transaction.atomic():
            found = get_app(app, lock=True)
            target = resolve(found, rev)
            operations.check_expected_current(found, request.input.get("expected_current"))
            if found.current_revision_id == target.id:
                raise Conflict(
                    f"revision {target.short_id} is Current for {found.name}; set another "
                    "revision first (set-rev) — the Current revision is never deleted",
                    details={"revision": str(target.id)},
                    code="revision_is_current",
                )
            if target.pinned:
                raise Conflict(
                    retention.deletion_refusal(found, target, request.actor.source),
                    details={
                        "revision": str(target.id),
                        "pinned_by": target.pinned_by.get_username() if target.pinned_by else None,
                        "pinned_at": target.pinned_at.isoformat() if target.pinned_at else None,
                    },
                    code="revision_is_pinned",
                )
            active = Operation.objects.filter(revision=target, finished_at__isnull=True).first()
            if active is not None:
                raise Conflict(
                    f"revision {target.short_id} is the target of {active.get_kind_display()} "
                    f"operation {active.id}, still in progress; wait for it to finish",
                    details={"operation": str(active.id), "kind": active.kind},
                    code="operation_in_progress",
                )
            op = operations.create(
                found,
                OperationKind.DELETE_REV,
                request.actor,
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
    except operations.Replayed as exc:
        return _operation_answer(exc.operation, replayed=True)
    return _queued_or_unavailable(op)


# -- quick operations: done in the request, still recorded ----------------------------------


def _scale_refused(exc: parameters.ParameterError) -> BadRequest:
    return BadRequest(
        f"refused, nothing changed: {exc}", details={"errors": exc.errors}, code="out_of_range"
    )


@api_view(
    POST=Role.DEPLOYER,
    body=S.ScaleBody,
    fields=SCALE_FIELDS,
    answers={"POST": {200: S.ScaleAnswer}},
    summary="Change runtime-tunable parameters",
)
def scale(request: HttpRequest, app: str) -> JsonResponse:
    body = dict(request.input)
    reason = _text(body.pop("reason", ""), "reason")
    if not body:
        raise BadRequest(
            f"nothing to change: give at least one of {', '.join(parameters.PARAMETERS)}"
        )
    try:
        # Coerced ("5" is 5) before anything records them: History shows what took effect.
        changes = parameters.validate(body)
    except parameters.ParameterError as exc:
        raise _scale_refused(exc) from None
    earlier = _replayed(request)
    if earlier is not None:
        return earlier
    try:
        with transaction.atomic():
            found = get_app(app, lock=True)
            if not found.settings:
                raise Conflict(
                    f"app {found.name!r} has never been deployed successfully; deploy it first"
                )
            try:
                new_settings, notes = parameters.apply_scale(found.settings, changes)
            except parameters.ParameterError as exc:
                raise _scale_refused(exc) from None
            changed = {
                name: [found.settings.get(name), value]
                for name, value in new_settings.items()
                if found.settings.get(name) != value
            }
            op = operations.create(
                found,
                OperationKind.SCALE,
                request.actor,
                reason=reason,
                params=changes,
                revision=found.current_revision,
                deadline=QUICK_DEADLINE,
                running=True,
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
    except operations.Replayed as exc:
        return _operation_answer(exc.operation, replayed=True)
    _tell_runtime(op, found.name)
    return _operation_answer(op, settings=new_settings, notes=notes)


def _suspend_or_resume(request: HttpRequest, app: str, *, suspend: bool) -> JsonResponse:
    body = request.input
    ref = body.get("revision")
    if ref is not None and not isinstance(ref, str):
        raise BadRequest("revision must be a string (an id or a prefix of 8+ characters)")
    reason = _text(body.get("reason"), "reason")
    earlier = _replayed(request)
    if earlier is not None:
        return earlier
    verb = "suspend" if suspend else "resume"
    try:
        with transaction.atomic():
            found = get_app(app, lock=True)
            operations.check_expected_current(found, body.get("expected_current"))
            if ref:
                target = resolve(found, ref)
            elif found.current_revision_id:
                target = found.current_revision
            else:
                raise Conflict(
                    f"app {found.name!r} has no current revision; name the revision to {verb}"
                )
            target = Revision.objects.select_for_update().get(pk=target.pk)
            wanted = RevisionStatus.DEPLOYED if suspend else RevisionStatus.SUSPENDED
            if target.status != wanted:
                raise Conflict(
                    f"revision {target.short_id} is {target.get_status_display()}; only a "
                    f"{wanted.label} revision can be {'suspended' if suspend else 'resumed'}",
                    details={"revision": str(target.id), "status": target.status},
                )
            op = operations.create(
                found,
                OperationKind.SUSPEND if suspend else OperationKind.RESUME,
                request.actor,
                reason=reason,
                params={"revision": str(target.id)},
                revision=target,
                deadline=QUICK_DEADLINE,
                running=True,
            )
            target.status = RevisionStatus.SUSPENDED if suspend else RevisionStatus.DEPLOYED
            target.save(update_fields=["status"])
            is_current = found.current_revision_id == target.id
            what = f"revision {target.short_id} is {target.get_status_display()}"
            if is_current:
                what += " (Current: the app " + (
                    "answers 503 'app suspended')" if suspend else "serves again)"
                )
            operations.step(op, what)
            events.publish_app_changed(found.name)
            operations.succeed(op, {"revision": str(target.id), "status": target.status})
    except operations.Replayed as exc:
        return _operation_answer(exc.operation, replayed=True)
    if suspend:
        try:
            stopped = runtime_client.stop_revision(str(target.id))
            operations.step(op, f"stopping {len(stopped)} runner(s) of {target.short_id}")
        except (httpclient.Unavailable, runtime_client.RuntimeError_) as exc:
            operations.step(op, f"runtime could not stop its runners ({exc})")
    _tell_runtime(op, found.name)
    return _operation_answer(op, revision=revision_json(target, found))


@api_view(
    POST=Role.ADMIN,
    body=S.SuspendBody,
    answers={"POST": {200: S.RevisionAnswer}},
    summary="Suspend a revision",
)
def suspend(request: HttpRequest, app: str) -> JsonResponse:
    return _suspend_or_resume(request, app, suspend=True)


@api_view(
    POST=Role.ADMIN,
    body=S.SuspendBody,
    answers={"POST": {200: S.RevisionAnswer}},
    summary="Resume a revision",
)
def resume(request: HttpRequest, app: str) -> JsonResponse:
    return _suspend_or_resume(request, app, suspend=False)


# -- runners ------------------------------------------------------------------------------


def _runner_operation(request: HttpRequest, runner_id: str, kind: OperationKind) -> JsonResponse:
    body = request.input
    replace = _bool(body.get("replace"), "replace") if kind == OperationKind.RUNNER_STOP else False
    reason = _text(body.get("reason"), "reason")
    earlier = _replayed(request)
    if earlier is not None:
        return earlier
    try:
        runners = runtime_client.list_runners()
    except httpclient.Unavailable as exc:
        raise _runtime_unavailable(exc) from None
    except runtime_client.RuntimeError_ as exc:
        raise Unavailable(f"the runtime refused: {exc}") from None
    runner = next((r for r in runners if r.get("id") == runner_id), None)
    if runner is None:
        raise NotFound(f"no runner {runner_id!r}", details={"runner": runner_id})
    if runner.get("state") in runtime_client.GONE_STATES:
        raise Conflict(f"runner {runner_id} is already {runner['state']}")
    try:
        with transaction.atomic():
            found = get_app(runner["app"], lock=True)
            op = operations.create(
                found,
                kind,
                request.actor,
                reason=reason,
                params={
                    "runner": runner_id,
                    "replace": replace,
                    "revision": runner.get("revision"),
                },
                revision=Revision.objects.filter(pk=runner.get("revision")).first(),
                deadline=timedelta(
                    seconds=found.settings.get("request_timeout", 3600)
                    + found.settings.get("startup_timeout", 600)
                )
                + SLACK,
            )
            operations.submit(op)
    except operations.Replayed as exc:
        return _operation_answer(exc.operation, replayed=True)
    return _queued_or_unavailable(op)


@api_view(
    POST=Role.DEPLOYER,
    body=S.RunnerStopBody,
    answers={"POST": {200: S.OperationAnswer, 202: S.OperationAnswer}},
    summary="Stop a runner gracefully",
)
def runner_stop(request: HttpRequest, runner_id: str) -> JsonResponse:
    return _runner_operation(request, runner_id, OperationKind.RUNNER_STOP)


@api_view(
    POST=Role.ADMIN,
    body=S.ReasonBody,
    answers={"POST": {200: S.OperationAnswer, 202: S.OperationAnswer}},
    summary="Kill a runner",
)
def runner_kill(request: HttpRequest, runner_id: str) -> JsonResponse:
    return _runner_operation(request, runner_id, OperationKind.RUNNER_KILL)


# -- cancel, hold -------------------------------------------------------------------------


@api_view(
    POST=Role.DEPLOYER,
    body=S.ReasonBody,
    answers={"POST": {200: S.OperationAnswer, 202: S.OperationAnswer}},
    summary="Cancel an operation",
)
def cancel_operation(request: HttpRequest, app: str, operation_id: str) -> JsonResponse:
    reason = _text(request.input.get("reason"), "reason")
    try:
        key = uuid.UUID(operation_id)
    except ValueError:
        raise BadRequest(f"{operation_id!r} is not an operation id (a UUID)") from None
    with transaction.atomic():
        found = get_app(app, lock=True)
        op = Operation.objects.filter(pk=key, app=found).first()
        if op is None:
            raise NotFound(
                f"app {found.name!r} has no operation {operation_id}",
                details={"operation": operation_id, "app": found.name},
            )
        if refusal := operations.cancel_refusal(op):
            raise refusal
        who = request.actor.user.get_username()
        operations.request_cancel(
            op, request.actor, f"cancelled by {who}" + (f": {reason}" if reason else "")
        )
    return _operation_answer(op)


@api_view(
    POST=Role.DEPLOYER,
    body=S.ReasonBody,
    answers={"POST": {200: S.OperationAnswer}},
    summary="Release a hold",
)
def release(request: HttpRequest, app: str) -> JsonResponse:
    reason = _text(request.input.get("reason"), "reason")
    earlier = _replayed(request)
    if earlier is not None:
        return earlier
    try:
        with transaction.atomic():
            found = get_app(app, lock=True)
            if not found.held:
                raise Conflict(
                    f"app {found.name!r} is not held; there is no hold to release",
                    details={"app": found.name, "held": False},
                    code="not_held",
                )
            held_by = found.held_operation
            op = operations.create(
                found,
                OperationKind.RELEASE,
                request.actor,
                reason=reason,
                params={"held_operation": str(held_by.id) if held_by else None},
                revision=found.current_revision,
                deadline=QUICK_DEADLINE,
                running=True,
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
    except operations.Replayed as exc:
        return _operation_answer(exc.operation, replayed=True)
    return _operation_answer(op)


@api_view(
    POST=Role.DEPLOYER,
    body=S.HoldPolicyBody,
    answers={"POST": {200: S.AppAnswer}},
    summary="Whether a rollback holds",
)
def hold_policy(request: HttpRequest, app: str) -> JsonResponse:
    body = request.input
    if "hold_on_rollback" not in body:
        raise BadRequest("nothing to change: give hold_on_rollback (true or false)")
    value = body["hold_on_rollback"]
    if not isinstance(value, bool):
        raise BadRequest(f"hold_on_rollback must be true or false, got {value!r}")
    reason = _text(body.get("reason"), "reason")
    earlier = _replayed(request)
    if earlier is not None:
        return earlier
    try:
        with transaction.atomic():
            found = get_app(app, lock=True)
            op = operations.create(
                found,
                OperationKind.HOLD_POLICY,
                request.actor,
                reason=reason,
                params={"hold_on_rollback": value},
                deadline=QUICK_DEADLINE,
                running=True,
            )
            before = found.hold_on_rollback
            found.hold_on_rollback = value
            found.save(update_fields=["hold_on_rollback", "updated_at"])
            what = "on: a rollback holds" if value else "off: a rollback does not hold"
            unchanged = " (unchanged)" if before == value else ""
            note = " A hold in place stays until released." if found.held and not value else ""
            operations.step(op, f"hold on rollback is {what} {found.name}{unchanged}.{note}")
            operations.succeed(op, {"hold_on_rollback": value})
    except operations.Replayed as exc:
        return _operation_answer(exc.operation, replayed=True)
    found = App.objects.select_related(*APP_RELATED).get(pk=found.pk)
    return _operation_answer(op, app=app_json(found))


# -- pins and retention ------------------------------------------------------------------


def _pin_or_unpin(request: HttpRequest, app: str, rev: str, *, pin: bool) -> JsonResponse:
    reason = _text(request.input.get("reason"), "reason")
    earlier = _replayed(request)
    if earlier is not None:
        return earlier
    try:
        with transaction.atomic():
            found = get_app(app, lock=True)
            target = Revision.objects.select_for_update().get(pk=resolve(found, rev).pk)
            if target.pinned == pin:
                state = f"already {retention.pin_note(target)}" if pin else "not pinned"
                raise Conflict(
                    f"revision {target.short_id} is {state}; nothing changed",
                    details={"revision": str(target.id), "pinned": target.pinned},
                    code="already_pinned" if pin else "not_pinned",
                )
            op = operations.create(
                found,
                OperationKind.PIN if pin else OperationKind.UNPIN,
                request.actor,
                reason=reason,
                params={"revision": str(target.id), "short_id": target.short_id},
                revision=target,
                deadline=QUICK_DEADLINE,
                running=True,
            )
            was = retention.pin_note(target)
            target.pinned = pin
            target.pinned_by = request.actor.user if pin else None
            target.pinned_at = op.created_at if pin else None
            target.save(update_fields=["pinned", "pinned_by", "pinned_at"])
            operations.step(
                op,
                f"revision {target.short_id} is pinned: retention and delete-rev leave it alone"
                if pin
                else f"revision {target.short_id} is no longer pinned (was {was})",
            )
            operations.succeed(op, {"revision": str(target.id), "pinned": pin})
    except operations.Replayed as exc:
        return _operation_answer(exc.operation, replayed=True)
    target = Revision.objects.select_related("deployed_by", "pinned_by").get(pk=target.pk)
    return _operation_answer(op, revision=revision_json(target, found))


@api_view(
    POST=Role.DEPLOYER,
    body=S.ReasonBody,
    answers={"POST": {200: S.RevisionAnswer}},
    summary="Pin a revision",
)
def pin(request: HttpRequest, app: str, rev: str) -> JsonResponse:
    return _pin_or_unpin(request, app, rev, pin=True)


@api_view(
    POST=Role.DEPLOYER,
    body=S.ReasonBody,
    answers={"POST": {200: S.RevisionAnswer}},
    summary="Unpin a revision",
)
def unpin(request: HttpRequest, app: str, rev: str) -> JsonResponse:
    return _pin_or_unpin(request, app, rev, pin=False)


def _retention_view(request: HttpRequest, app: str) -> JsonResponse:
    """GET the app's retention settings (?dry_run=1 adds what would go and why the others
    stay); POST changes them, recorded as a `retention` operation, or with dry_run only
    answers what the new values would delete."""
    if request.method == "GET":
        if unknown := sorted(set(request.GET) - {"dry_run"}):
            raise BadRequest(f"unknown query parameter {unknown[0]!r}; allowed: dry_run")
        found = get_app(app)
        if _bool(request.GET.get("dry_run"), "dry_run"):
            return JsonResponse(retention.dry_run(found))
        return JsonResponse({"keep": found.retention_keep, "enabled": found.retention_enabled})
    body = request.input
    if "keep" not in body and "enabled" not in body:
        raise BadRequest("nothing to change: give keep (1 to 1000) and/or enabled (true or false)")
    keep = retention.check_keep(body["keep"]) if "keep" in body else None
    enabled = body.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise BadRequest(f"enabled must be true or false, got {enabled!r}")
    reason = _text(body.get("reason"), "reason")
    if _bool(body.get("dry_run"), "dry_run"):
        return JsonResponse(retention.dry_run(get_app(app), keep))
    earlier = _replayed(request)
    if earlier is not None:
        return earlier
    try:
        with transaction.atomic():
            found = get_app(app, lock=True)
            before = {"keep": found.retention_keep, "enabled": found.retention_enabled}
            after = {
                "keep": before["keep"] if keep is None else keep,
                "enabled": before["enabled"] if enabled is None else enabled,
            }
            op = operations.create(
                found,
                OperationKind.RETENTION,
                request.actor,
                reason=reason,
                params={k: v for k, v in (("keep", keep), ("enabled", enabled)) if v is not None},
                deadline=QUICK_DEADLINE,
                running=True,
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
    except operations.Replayed as exc:
        return _operation_answer(exc.operation, replayed=True)
    return _operation_answer(op, retention=after)


@api_view(
    GET=Role.VIEWER,
    POST=Role.ADMIN,
    body=S.RetentionBody,
    query=S.RetentionQuery,
    answers={"GET": {200: S.RetentionRead}, "POST": {200: S.RetentionChange}},
    summary={"GET": "Retention settings", "POST": "Change retention settings"},
)
def retention_settings(request: HttpRequest, app: str) -> JsonResponse:
    return _retention_view(request, app)


@api_view(
    POST=Role.ADMIN,
    body=S.NetworkBody,
    answers={"POST": {200: S.AppAnswer}},
    summary="The app's outbound network",
)
def network(request: HttpRequest, app: str) -> JsonResponse:
    """An app's outbound network: admins only, as `outbound` widens what its code reaches."""
    body = request.input
    choices = ", ".join(Network.values)
    if "network" not in body:
        raise BadRequest(f"nothing to change: give network ({choices})")
    value = body["network"]
    if value not in Network.values:
        raise BadRequest(f"network must be one of {choices}, got {value!r}")
    reason = _text(body.get("reason"), "reason")
    earlier = _replayed(request)
    if earlier is not None:
        return earlier
    try:
        with transaction.atomic():
            found = get_app(app, lock=True)
            op = operations.create(
                found,
                OperationKind.NETWORK,
                request.actor,
                reason=reason,
                params={"network": value},
                deadline=QUICK_DEADLINE,
                running=True,
            )
            before = found.network
            found.network = value
            found.save(update_fields=["network", "updated_at"])
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
    except operations.Replayed as exc:
        return _operation_answer(exc.operation, replayed=True)
    _tell_runtime(op, found.name)
    found = App.objects.select_related(*APP_RELATED).get(pk=found.pk)
    return _operation_answer(op, app=app_json(found))


# -- diff and deploy preview ----------------------------------------------------------

DIFF_QUERY = ("a", "b")


@api_view(
    GET=Role.VIEWER,
    query=S.DiffQuery,
    answers={"GET": {200: S.Diff}},
    summary="What changed between two revisions",
)
def app_diff(request: HttpRequest, app: str) -> JsonResponse:
    """What changed from revision `a` to revision `b` of the app (diff.py)."""
    if unknown := sorted(set(request.GET) - set(DIFF_QUERY)):
        raise BadRequest(
            f"unknown query parameter {unknown[0]!r}; allowed: a, b",
            details={"unknown": unknown, "allowed": list(DIFF_QUERY)},
            code="unknown_field",
        )
    refs = {key: request.GET.get(key, "").strip() for key in DIFF_QUERY}
    if missing := [key for key, value in refs.items() if not value]:
        raise BadRequest(
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required: "
            "give two revisions of the app (a full id or a unique prefix of 8+ hex characters)",
            details={"missing": missing},
        )
    found = get_app(app)
    a, b = resolve(found, refs["a"]), resolve(found, refs["b"])
    return JsonResponse({"app": found.name, **diff.diff_revisions(a, b)})


@dataclass(frozen=True)
class _StagedRevision:
    """What the import check reads of a revision, for a bundle that is only staged."""

    bundle_dir: Path
    entrypoint: str


@api_view(
    POST=Role.DEPLOYER,
    form=S.DeployForm,
    answers={"POST": {200: S.DeployPreview}},
    summary="What a deploy would create",
)
def deploy_preview(request: HttpRequest, app: str) -> JsonResponse:
    """The revision a deploy with this form would create, changing nothing: the bundle is
    staged and import-checked as a deploy's is, compared with Current, then discarded."""
    limit = settings.MAX_BUNDLE_BYTES
    if int(request.META.get("CONTENT_LENGTH") or 0) > limit + 1024 * 1024:
        raise TooLarge(f"the upload is larger than the {limit}-byte bundle limit")
    if bad_name := rules.app_name_error(app):
        raise BadRequest(bad_name, details={"app": app})
    upload = request.FILES.get("bundle")
    if upload is None:
        raise BadRequest("no bundle: send the tar.gz as multipart field 'bundle'")
    entrypoint = _text(request.POST.get("entrypoint"), "entrypoint", limit=300)
    if not entrypoint:
        raise BadRequest("entrypoint is required, e.g. app.py::MyApp")
    strategy = _strategy(request.POST.get("strategy"))
    reset_scale = _bool(request.POST.get("reset_scale"), "reset_scale")
    message = _text(request.POST.get("message"), "message")
    annotations = _annotations(request.POST.get("annotations", ""))
    auth_mode = request.POST.get("auth_mode", "")
    if auth_mode and auth_mode not in AuthMode.values:
        raise BadRequest(
            f"auth_mode must be one of {', '.join(AuthMode.values)}, got {auth_mode!r}"
        )
    found = App.objects.select_related("current_revision__deployed_by").filter(name=app).first()
    actor = request.actor
    if (
        found is not None
        and auth_mode
        and (
            refusal := rules.auth_mode_refusal(
                found.auth_mode, auth_mode, owner=found.owner_id == actor.user.pk, role=actor.role
            )
        )
    ):
        raise Forbidden(
            f"{refusal}; the deploy would be refused",
            details={"app": found.name, "auth_mode": found.auth_mode, "requested": auth_mode},
            code="auth_mode_widening_forbidden",
        )
    bundle = bundles.stage(upload, entrypoint)
    try:
        try:
            described = executors.import_check(_StagedRevision(bundle.path, entrypoint))
        except executors.ImportCheckFailed as exc:
            raise ControlError(
                f"{exc}; the deploy would fail",
                details={"log_tail": exc.log_tail},
                status=422,
                code="import_check_failed",
            ) from None
        except executors.Failed as exc:
            raise ControlError(
                f"{exc}; the deploy would fail", status=422, code="import_check_failed"
            ) from None
        try:
            code = parameters.code_values(described["settings"])
        except parameters.ParameterError as exc:
            raise ControlError(
                f"the code declares values out of range: {exc}; the deploy would fail",
                details={"errors": exc.errors},
                status=422,
                code="import_check_failed",
            ) from None
        alias = found.settings if found is not None else None
        values, rows = diff.deploy_settings(code, alias, reset_scale)
        current = found.current_revision if found is not None else None
        new_side = diff.Side(
            label="the new bundle",
            entrypoint=entrypoint,
            message=message,
            annotations=annotations,
            settings=values,
            bundle_dir=bundle.path,
            info={"id": None, "short_id": None, "status": "preview", "current": False},
        )
        changes = (
            diff.diff_sides(diff.side_of(current, current.id), new_side)
            if current is not None
            else None
        )
    finally:
        bundles.discard(bundle)  # A preview leaves nothing behind, whatever happened.
    return JsonResponse(
        {
            "app": app,
            "app_exists": found is not None,
            "entrypoint": entrypoint,
            "endpoints": described.get("endpoints", []),
            "strategy": strategy,
            "reset_scale": reset_scale,
            "bundle": {"sha256": bundle.sha256, "size": bundle.size, "files": len(bundle.files)},
            "settings": rows,
            "current": str(current.id) if current is not None else None,
            "diff": changes,
        }
    )
