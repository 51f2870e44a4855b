"""The control API: one small function view per URL; the logic lives in plain modules."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import OuterRef, Subquery
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse

from dashboard.controlplane import (
    bundles,
    diff,
    executors,
    health,
    mutations,
    parameters,
    retention,
    rules,
    runtime_client,
)
from dashboard.controlplane.api import schemas as S
from dashboard.controlplane.api.auth import api_view, public_view, query_of, validated
from dashboard.controlplane.api.contract import TEXT, document
from dashboard.controlplane.api.serializers import (
    app_json,
    operation_json,
    parameters_json,
    revision_json,
)
from dashboard.controlplane.errors import (
    BadRequest,
    ControlError,
    NotFound,
    TooLarge,
)
from dashboard.controlplane.models import (
    App,
    Operation,
    OperationKind,
    Revision,
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


# -- request helpers ------------------------------------------------------------------


def paginated(qs, query: S.PageQuery, key: str, render: Callable[[Any], Any]) -> dict[str, Any]:
    """One page of a listing, in the shape every listing answers (schemas.Page)."""
    page, size = query.page, query.page_size
    count = qs.count()
    items = list(qs[(page - 1) * size : page * size])
    return {
        key: [render(item) for item in items],
        "count": count,
        "page": page,
        "page_size": size,
        "next": page + 1 if page * size < count else None,
    }


def _operation_answer(op: Operation, **extra: Any) -> JsonResponse:
    """202 while the operation runs, 200 once it finished (quick ones, replays)."""
    op = Operation.objects.select_related("app").prefetch_related("steps").get(pk=op.pk)
    status = 200 if op.is_finished else 202
    return JsonResponse({"operation": operation_json(op), **extra}, status=status)


def _answer(
    done: mutations.Done, shows: Callable[[mutations.Done], dict[str, Any]] | None = None
) -> JsonResponse:
    """A mutation's answer: the operation and what `shows` adds; a replay answers the
    original operation and says so."""
    if done.replayed:
        extra: dict[str, Any] = {"replayed": True}
        if done.revision is not None:
            extra["revision"] = revision_json(done.revision, done.operation.app)
    else:
        extra = shows(done) if shows else {}
    return _operation_answer(done.operation, **extra)


def _app_now(done: mutations.Done) -> dict[str, Any]:
    return {"app": app_json(App.objects.select_related(*APP_RELATED).get(pk=done.app.pk))}


def _revision_now(done: mutations.Done) -> dict[str, Any]:
    return {"revision": revision_json(done.revision, done.app)}


def _values(done: mutations.Done) -> dict[str, Any]:
    return done.values


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
    query = query_of(S.RevisionQuery, request)
    found = get_app(app)
    qs = Revision.objects.filter(app=found).select_related("deployed_by", "pinned_by")
    if query.status:
        qs = qs.filter(status=query.status)
    qs = qs.order_by("-created_at", "-id")
    return JsonResponse(paginated(qs, query, "revisions", lambda r: revision_json(r, found)))


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
    query = query_of(S.PageQuery, request)
    found = get_app(app)
    qs = found.operations.select_related("app").prefetch_related("steps").order_by("-created_at")
    return JsonResponse(paginated(qs, query, "operations", operation_json))


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
    except runtime_client.FAILURES as exc:
        raise runtime_client.error(exc) from None
    return JsonResponse({"runners": runners})


@api_view(GET=Role.VIEWER, query=S.LogsQuery, answers={"GET": {200: TEXT}}, summary="Runner logs")
def app_logs(request: HttpRequest, app: str) -> HttpResponse:
    asked = query_of(S.LogsQuery, request)
    found = get_app(app)
    rev, runner = (asked.revision or "").strip(), (asked.runner or "").strip()
    query: dict[str, Any] = {"tail": asked.tail}
    if rev:
        query["revision"] = str(resolve(found, rev).id)
    else:
        query["app"] = found.name
        if runner:
            query["runner"] = runner
    try:
        text = runtime_client.logs(**query)
    except runtime_client.FAILURES as exc:
        raise runtime_client.error(exc) from None
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


def _deploy_form(request: HttpRequest, name: str) -> tuple[Any, dict[str, Any]]:
    """The deploy form (a preview's too), checked: its upload and its fields."""
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
    form = S.DeployFields.model_validate(
        validated(S.DeployFields, {k: request.POST.get(k) for k in request.POST})
    )
    return upload, {
        "entrypoint": form.entrypoint,
        "strategy": form.strategy,
        "reset_scale": form.reset_scale,
        "promote": form.promote,
        "message": form.message,
        "annotations": _annotations(form.annotations),
        "auth_mode": form.auth_mode or "",
    }


def _deploy(request: HttpRequest, name: str) -> JsonResponse:
    earlier = mutations.replayed(request.actor)
    if earlier is not None:
        return _answer(earlier)
    upload, form = _deploy_form(request, name)
    # Checked and unpacked into a private staging directory before the app's lock and the
    # transaction: a slow or hostile bundle holds up nobody else.
    bundle = bundles.stage(upload, form["entrypoint"])
    done = mutations.deploy(name, request.actor, bundle, **form)
    return _answer(done, _revision_now)


# -- set-rev, rollout, delete-rev ----------------------------------------------------------


@api_view(
    POST=Role.DEPLOYER,
    body=S.SetRevBody,
    answers={"POST": {200: S.OperationAnswer, 202: S.OperationAnswer}},
    summary="Make a revision Current",
)
def set_rev(request: HttpRequest, app: str) -> JsonResponse:
    body = request.input
    done = mutations.set_rev(
        app,
        request.actor,
        body["revision"],
        strategy=body.get("strategy", "rolling"),
        reason=body.get("reason", ""),
        expected_current=body.get("expected_current"),
    )
    return _answer(done)


@api_view(
    POST=Role.DEPLOYER,
    body=S.RolloutBody,
    answers={"POST": {200: S.OperationAnswer, 202: S.OperationAnswer}},
    summary="Restart Current's runners",
)
def rollout(request: HttpRequest, app: str) -> JsonResponse:
    body = request.input
    done = mutations.rollout(
        app,
        request.actor,
        force=body.get("force", False),
        reason=body.get("reason", ""),
        expected_current=body.get("expected_current"),
    )
    return _answer(done)


def _delete_revision(request: HttpRequest, app: str, rev: str) -> JsonResponse:
    body = request.input
    done = mutations.delete_revision(
        app,
        request.actor,
        rev,
        reason=body.get("reason", ""),
        expected_current=body.get("expected_current"),
    )
    return _answer(done)


# -- quick operations: done in the request, still recorded ----------------------------------


@api_view(
    POST=Role.DEPLOYER,
    body=S.ScaleBody,
    fields=SCALE_FIELDS,
    answers={"POST": {200: S.ScaleAnswer}},
    summary="Change runtime-tunable parameters",
)
def scale(request: HttpRequest, app: str) -> JsonResponse:
    values = dict(request.input)
    reason = values.pop("reason", "")
    done = mutations.scale(app, request.actor, values, reason=reason)
    return _answer(done, _values)


def _suspend_or_resume(request: HttpRequest, app: str, *, suspend: bool) -> JsonResponse:
    body = request.input
    done = mutations.suspend_or_resume(
        app,
        request.actor,
        body.get("revision") or None,
        suspend=suspend,
        reason=body.get("reason", ""),
        expected_current=body.get("expected_current"),
    )
    return _answer(done, _revision_now)


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


@api_view(
    POST=Role.DEPLOYER,
    body=S.RunnerStopBody,
    answers={"POST": {200: S.OperationAnswer, 202: S.OperationAnswer}},
    summary="Stop a runner gracefully",
)
def runner_stop(request: HttpRequest, runner_id: str) -> JsonResponse:
    body = request.input
    done = mutations.runner_operation(
        runner_id,
        request.actor,
        OperationKind.RUNNER_STOP,
        replace=body.get("replace", False),
        reason=body.get("reason", ""),
    )
    return _answer(done)


@api_view(
    POST=Role.ADMIN,
    body=S.ReasonBody,
    answers={"POST": {200: S.OperationAnswer, 202: S.OperationAnswer}},
    summary="Kill a runner",
)
def runner_kill(request: HttpRequest, runner_id: str) -> JsonResponse:
    done = mutations.runner_operation(
        runner_id,
        request.actor,
        OperationKind.RUNNER_KILL,
        replace=False,
        reason=request.input.get("reason", ""),
    )
    return _answer(done)


# -- cancel, hold -------------------------------------------------------------------------


@api_view(
    POST=Role.DEPLOYER,
    body=S.ReasonBody,
    answers={"POST": {200: S.OperationAnswer, 202: S.OperationAnswer}},
    summary="Cancel an operation",
)
def cancel_operation(request: HttpRequest, app: str, operation_id: str) -> JsonResponse:
    try:
        key = uuid.UUID(operation_id)
    except ValueError:
        raise BadRequest(f"{operation_id!r} is not an operation id (a UUID)") from None
    done = mutations.cancel(app, request.actor, key, reason=request.input.get("reason", ""))
    return _answer(done)


@api_view(
    POST=Role.DEPLOYER,
    body=S.ReasonBody,
    answers={"POST": {200: S.OperationAnswer}},
    summary="Release a hold",
)
def release(request: HttpRequest, app: str) -> JsonResponse:
    return _answer(mutations.release(app, request.actor, reason=request.input.get("reason", "")))


@api_view(
    POST=Role.DEPLOYER,
    body=S.HoldPolicyBody,
    answers={"POST": {200: S.AppAnswer}},
    summary="Whether a rollback holds",
)
def hold_policy(request: HttpRequest, app: str) -> JsonResponse:
    body = request.input
    done = mutations.hold_policy(
        app, request.actor, body["hold_on_rollback"], reason=body.get("reason", "")
    )
    return _answer(done, _app_now)


# -- pins and retention ------------------------------------------------------------------


def _pin_or_unpin(request: HttpRequest, app: str, rev: str, *, pin: bool) -> JsonResponse:
    done = mutations.pin(app, request.actor, rev, pin=pin, reason=request.input.get("reason", ""))
    return _answer(done, _revision_now)


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


@api_view(
    GET=Role.VIEWER,
    POST=Role.ADMIN,
    body=S.RetentionBody,
    query=S.RetentionQuery,
    answers={"GET": {200: S.RetentionRead}, "POST": {200: S.RetentionChange}},
    summary={"GET": "Retention settings", "POST": "Change retention settings"},
)
def retention_settings(request: HttpRequest, app: str) -> JsonResponse:
    """GET the app's retention settings (?dry_run=1 adds what would go and why the others
    stay); POST changes them, recorded as a `retention` operation, or with dry_run only
    answers what the new values would delete."""
    if request.method == "GET":
        query = query_of(S.RetentionQuery, request)
        found = get_app(app)
        if query.dry_run:
            return JsonResponse(retention.dry_run(found))
        return JsonResponse({"keep": found.retention_keep, "enabled": found.retention_enabled})
    body = request.input
    if "keep" not in body and "enabled" not in body:
        raise BadRequest("nothing to change: give keep (1 to 1000) and/or enabled (true or false)")
    keep = retention.check_keep(body["keep"]) if "keep" in body else None
    if body.get("dry_run"):
        return JsonResponse(retention.dry_run(get_app(app), keep))
    done = mutations.retention_settings(
        app, request.actor, keep=keep, enabled=body.get("enabled"), reason=body.get("reason", "")
    )
    return _answer(done, _values)


@api_view(
    POST=Role.ADMIN,
    body=S.NetworkBody,
    answers={"POST": {200: S.AppAnswer}},
    summary="The app's outbound network",
)
def network(request: HttpRequest, app: str) -> JsonResponse:
    """An app's outbound network: admins only, as `outbound` widens what its code reaches."""
    body = request.input
    done = mutations.network(app, request.actor, body["network"], reason=body.get("reason", ""))
    return _answer(done, _app_now)


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
    upload, form = _deploy_form(request, app)
    entrypoint, strategy, reset_scale = form["entrypoint"], form["strategy"], form["reset_scale"]
    message, annotations = form["message"], form["annotations"]
    found = App.objects.select_related("current_revision__deployed_by").filter(name=app).first()
    if found is not None and (
        refusal := mutations.auth_mode_refusal(
            found, request.actor, form["auth_mode"], outcome="the deploy would be refused"
        )
    ):
        raise refusal
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
