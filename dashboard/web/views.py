"""The dashboard's pages and fragments: one small function view per URL.

Views only read the database. Every change goes: confirmation dialog -> POST here
(validated) -> Celery task (tasks.py) -> control API, and the page watches the
resulting operation by polling.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any
from urllib.parse import urlencode

import kombu.exceptions
import redis.exceptions
from celery.result import AsyncResult
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db.models import Max, OuterRef, Prefetch, Subquery
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.http import HttpResponseStopPolling, reswap, retarget, trigger_client_event
from django_tables2 import RequestConfig

from dashboard.controlplane import diff, health, revisions, tokens
from dashboard.controlplane.api.errors import error_response
from dashboard.controlplane.errors import ControlError
from dashboard.controlplane.models import (
    App,
    Operation,
    OperationKind,
    OperationStep,
    Revision,
    RevisionStatus,
    Role,
    role_of,
)
from dashboard.controlplane.rules import role_allows
from dashboard.web import markup, progress
from dashboard.web import runners as runner_data
from dashboard.web.access import BadInput, find_revision, get_app, require_role
from dashboard.web.actions import (
    ACTIONS,
    ActionSpec,
    app_refusal,
    live_settings,
    operation_title,
    revision_refusal,
    rollback_changes,
)
from dashboard.web.actions import title as action_title
from dashboard.web.tables import AppsTable, HistoryTable, RunnersTable, VersionsTable
from dashboard.web.tasks import submit_action

VERSIONS_PER_PAGE = 25
HISTORY_PER_PAGE = VERSIONS_PER_PAGE
QUEUE_DOWN = "Task queue unavailable — nothing was changed. Try again in a moment."
NO_SUCH_ACTION = "You submitted no action with this key, or it is more than a day old."


def _app_or_404(name: str) -> App:
    try:
        return get_app(name)
    except BadInput as exc:
        raise Http404(exc.message) from None


def _error(request: HttpRequest, message: str, status: int) -> HttpResponse:
    """A precise error, as a fragment for htmx (shown inside the open dialog) or a page."""
    response = render(
        request,
        "web/error.html#error" if request.htmx else "web/error.html",
        {"message": message, "status": status},
        status=status,
    )
    if request.htmx:
        response = reswap(retarget(response, "#dialog-content"), "innerHTML")
    return response


def signin_locked_out(request: HttpRequest, response=None, credentials=None) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE: too many failed sign-ins, said in our own page (429)."""
    minutes = max(1, round(settings.AXES_COOLOFF_TIME.total_seconds() / 60))
    message = (
        f"Too many failed sign-ins for this username from your address. Try again in "
        f"{minutes} minute{'s' if minutes != 1 else ''}, or ask an admin to reset it."
    )
    if request.path.startswith("/api/"):
        return error_response(429, "too_many_failed_attempts", message)
    return _error(request, message, 429)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW: a form without a valid security token, said in our own page."""
    return _error(
        request,
        "This form's security token is missing or out of date (the page may be older than "
        "your sign-in). Reload the page and try again; nothing was changed.",
        403,
    )


# -- Apps --------------------------------------------------------------------------------


@require_GET
@login_required
def apps(request: HttpRequest) -> HttpResponse:
    last_op = Operation.objects.filter(app=OuterRef("pk")).order_by("-created_at").values("id")
    app_list = list(
        App.objects.select_related("current_revision").annotate(last_op_id=Subquery(last_op[:1]))
    )
    ops = Operation.objects.in_bulk([a.last_op_id for a in app_list if a.last_op_id])
    # One call to the runtime per page, grouped by app here.
    runners, runtime_error = runner_data.fetch()
    summaries = runner_data.counts_by_app(
        runners, {a.name: a.current_revision_id for a in app_list}
    )
    healths = health.for_apps(app_list)  # One more call to the runtime, for every app.
    for app in app_list:
        app.health = healths[app.name]
        app.last_op = ops.get(app.last_op_id)
        app.runner_summary = summaries.get(app.name, runner_data.AppRunners())
        app.is_suspended = bool(
            app.current_revision and app.current_revision.status == RevisionStatus.SUSPENDED
        )
    table = AppsTable(app_list)
    table.runtime_error = runtime_error
    RequestConfig(request, paginate={"per_page": 100}).configure(table)
    context = {"table": table, "runtime_error": runtime_error}
    # The poll (static/js/poll.js) asks for the table alone; runner counts come from the
    # runtime and change by themselves, so there is no cheap "nothing changed" answer.
    template = "web/apps.html#apps-table" if request.htmx else "web/apps.html"
    return render(request, template, context)


@require_GET
@login_required
def app_home(request: HttpRequest, app: str) -> HttpResponse:
    return redirect("versions", app=_app_or_404(app).name)


# -- Versions ----------------------------------------------------------------------------


def versions_stamp(app: App) -> str:
    """A cheap fingerprint of everything the Versions table shows.

    Every change to revisions happens through an operation (a deploy creates one, a
    rollback finishes one...), so the newest operation, its last step and the app row
    cover them, and the newest revision's time covers revisions made without one; the
    minute makes relative times ("3 minutes ago") refresh too.
    """
    # One query, and each part an index lookup (LIMIT 1), so that a poll costs the same
    # with 10,000 operations; grouping all of the app's operations by their steps to
    # find the newest one's last step took ~30 ms there.
    newest = Revision.objects.filter(app=app).order_by("-created_at").values("created_at")[:1]
    last_step = OperationStep.objects.filter(operation=OuterRef("pk")).order_by("-id")
    op = (
        Operation.objects.filter(app=app)
        .order_by("-created_at")
        .values_list(
            "id", "state", "finished_at", Subquery(last_step.values("id")[:1]), Subquery(newest)
        )
        .first()
    )
    if op is None:  # No operation yet: revisions made some other way (fixtures, admin).
        op = Revision.objects.filter(app=app).aggregate(m=Max("created_at"))["m"]
    parts = [
        app.updated_at,
        app.current_revision_id,
        op,
        int(timezone.now().timestamp() // 60),
    ]
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:16]


def _poll_url(request: HttpRequest, stamp: str) -> str:
    query = {k: v for k, v in request.GET.items() if k not in ("stamp", "panel")}
    return request.path + "?" + urlencode({**query, "stamp": stamp})


@require_GET
@login_required
def versions(request: HttpRequest, app: str) -> HttpResponse:
    app = _app_or_404(app)
    status = request.GET.get("status", "")
    filter_error = ""
    if status and status not in RevisionStatus.values:
        filter_error = f"Unknown status {status!r}; showing all. Allowed: " + ", ".join(
            RevisionStatus.labels
        )
        status = ""
    stamp = versions_stamp(app)
    if request.htmx and request.GET.get("stamp") == stamp:
        # Nothing changed since the browser's copy: 204 makes htmx keep it as is.
        return HttpResponse(status=204)

    role = role_of(request.user)
    revisions = (
        Revision.objects.filter(app=app)
        .select_related("deployed_by")
        .prefetch_related(
            Prefetch(
                "operations",
                # Only Deploying and Failed rows show their deploy's steps: load no others.
                queryset=Operation.objects.filter(
                    kind=OperationKind.DEPLOY,
                    revision__status__in=(RevisionStatus.DEPLOYING, RevisionStatus.FAILED),
                )
                .order_by("-created_at")
                .prefetch_related("steps"),
                to_attr="deploy_ops",
            )
        )
        .order_by("-created_at", "-id")
    )
    if status:
        revisions = revisions.filter(status=status)
    empty = f"No {RevisionStatus(status).label} revisions." if status else "No revisions yet."
    table = VersionsTable(revisions, app=app, role=role, empty_text=empty)
    RequestConfig(request, paginate={"per_page": VERSIONS_PER_PAGE}).configure(table)
    context = {
        "app": app,
        "table": table,
        "role": role,
        "status": status,
        "statuses": RevisionStatus.choices,
        "filter_error": filter_error,
        "poll_url": _poll_url(request, stamp),
        "can_deploy": role_allows(role, Role.DEPLOYER),
        "rollout_refusal": app_refusal("rollout", app),
        "settings_now": live_settings(app),
        "health": health.for_app(app),
    }
    if request.htmx:
        return render(request, "web/versions.html#versions-table", context)
    panel_key = request.GET.get("panel")
    if panel_key:
        context["panel"] = _progress_context(request, app.name, panel_key)
    return render(request, "web/versions.html", context)


# -- Compare two revisions ---------------------------------------------------------------

COMPARE_QUERY = ("a", "b")


@require_GET
@login_required
def compare(request: HttpRequest, app: str) -> HttpResponse:
    """What changed from revision a to revision b (controlplane/diff.py, as the API and
    the CLI show it); both are resolved by the control plane's one resolver."""
    app = _app_or_404(app)
    if unknown := sorted(set(request.GET) - set(COMPARE_QUERY)):
        return _error(request, f"Unknown parameter {unknown[0]!r}; the page takes a and b.", 400)
    refs = {key: request.GET.get(key, "").strip() for key in COMPARE_QUERY}
    context: dict[str, Any] = {"app": app, "refs": refs, "result": None}
    if all(refs.values()):
        try:
            a, b = (revisions.resolve(app, refs[key]) for key in COMPARE_QUERY)
        except ControlError as exc:
            return _error(request, exc.message, exc.status)
        result = diff.diff_revisions(a, b)
        context.update(result=result, sides=[("a", result["a"]), ("b", result["b"])])
    elif any(refs.values()):
        missing = " and ".join(key for key, value in refs.items() if not value)
        return _error(request, f"Give both revisions to compare: {missing} is missing.", 400)
    return render(request, "web/compare.html", context)


# -- Runners and history -----------------------------------------------------------------


@require_GET
@login_required
def runners(request: HttpRequest, app: str) -> HttpResponse:
    app = _app_or_404(app)
    role = role_of(request.user)
    listing, runtime_error = runner_data.fetch(app.name)
    table = RunnersTable(runner_data.for_display(listing), app=app, role=role)
    RequestConfig(request, paginate=False).configure(table)
    context = {"app": app, "table": table, "runtime_error": runtime_error, "role": role}
    template = "web/runners.html#runners-panel" if request.htmx else "web/runners.html"
    return render(request, template, context)


@require_GET
@login_required
def history(request: HttpRequest, app: str) -> HttpResponse:
    app = _app_or_404(app)
    # Operations change only through the newest one (they are serialised per app), which
    # is what versions_stamp looks at: a poll that finds it unchanged costs a 204.
    stamp = versions_stamp(app)
    if request.htmx and request.GET.get("stamp") == stamp:
        return HttpResponse(status=204)
    operations = Operation.objects.filter(app=app).order_by("-created_at", "-id")
    table = HistoryTable(operations)
    RequestConfig(request, paginate={"per_page": HISTORY_PER_PAGE}).configure(table)
    context = {"app": app, "table": table, "poll_url": _poll_url(request, stamp)}
    template = "web/history.html#history-table" if request.htmx else "web/history.html"
    return render(request, template, context)


# -- Confirmation dialogs and their submission -------------------------------------------


def _target(spec: ActionSpec, app: App, request: HttpRequest) -> dict[str, Any]:
    """The validated object of an action, as template context and task parameters."""
    # The dialog's form posts back to the URL it was opened with, so the target is in
    # the query string for GET and POST alike.
    data = request.GET
    if spec.target == "revision":
        revision = find_revision(app, data.get("rev", ""))
        refusal = revision_refusal(spec.name, app, revision)
        if refusal:
            raise BadInput(f"{spec.title} {revision.short_id}: {refusal}", status=409)
        return {
            "revision": revision,
            "params": {"revision": str(revision.id)},
            "action_title": action_title(spec, revision.short_id),
        }
    if spec.target == "runner":
        runner_id = data.get("runner", "")
        if not runner_id:
            raise BadInput("Which runner? Give its id as ?runner=RUNNER_ID.", status=400)
        listing, runtime_error = runner_data.fetch(app.name)
        if runtime_error:
            raise BadInput(f"Cannot act on runners now: {runtime_error}.", status=503)
        runner = next((r for r in listing if r.get("id") == runner_id), None)
        if runner is None:
            raise BadInput(f"App {app.name!r} has no runner {runner_id!r}.", status=404)
        if runner.get("state") in ("TERMINATED", "FAILED"):
            raise BadInput(f"Runner {runner_id} has already stopped.", status=409)
        return {
            "runner": runner,
            "params": {"runner": runner_id},
            "action_title": action_title(spec, runner_id),
        }
    refusal = app_refusal(spec.name, app)
    if refusal:
        raise BadInput(f"{spec.title} {app.name}: {refusal}", status=409)
    return {"params": {}, "action_title": action_title(spec, "")}


def _form(spec: ActionSpec, app: App, request: HttpRequest):
    extra = {"current": live_settings(app)} if spec.name == "scale" else {}
    if request.method == "POST":
        return spec.form(request.POST, **extra)
    return spec.form(initial={"key": uuid.uuid4()}, **extra)


def _enqueue(
    spec: ActionSpec, app: App, params: dict[str, Any], user, key: str, title: str
) -> None:
    """Hand the action to Celery, or raise BadInput if the queue cannot take it.

    A fresh broker connection (not the pool) means a Redis outage is noticed now, and
    retry=False makes it fail at once instead of leaving the user waiting.
    """
    from dashboard.celery import app as celery_app

    try:
        progress.remember(key, user.pk, title)
        with celery_app.connection_for_write() as connection:
            submit_action.apply_async(
                args=[spec.name, app.name, params, tokens.issue_dashboard_token(user), key],
                task_id=key,
                connection=connection,
                retry=False,
            )
    except (kombu.exceptions.OperationalError, redis.exceptions.RedisError, OSError):
        raise BadInput(QUEUE_DOWN, status=503) from None


@require_http_methods(["GET", "POST"])
@login_required
def confirm(request: HttpRequest, app: str, action: str) -> HttpResponse:
    spec = ACTIONS.get(action)
    if spec is None:
        return _error(request, f"Unknown action {action!r}.", 404)
    require_role(request, spec.role)
    try:
        app_obj = get_app(app)
        target = _target(spec, app_obj, request)
        form = _form(spec, app_obj, request)
        if request.method == "POST" and form.is_valid():
            key = str(form.cleaned_data["key"])
            params = {**form.params(), **target["params"]}
            _enqueue(spec, app_obj, params, request.user, key, target["action_title"])
            return _submitted(request, app_obj, key)
    except BadInput as exc:
        return _error(request, exc.message, exc.status)
    context = {"app": app_obj, "spec": spec, "form": form, "role": role_of(request.user), **target}
    if spec.name == "rollback":
        context["changes"] = rollback_changes(app_obj, target["revision"])
        context["current"] = app_obj.current_revision
    response = render(
        request, "web/confirm.html#dialog" if request.htmx else "web/confirm.html", context
    )
    if request.htmx and request.method == "POST":
        # An invalid form is shown again, with its errors, in the dialog it came from.
        response = reswap(retarget(response, "#dialog-content"), "innerHTML")
    return response


def _submitted(request: HttpRequest, app: App, key: str) -> HttpResponse:
    if not request.htmx:
        return redirect(reverse("versions", args=[app.name]) + "?" + urlencode({"panel": key}))
    context = {"panel": _progress_context(request, app.name, key)}
    response = render(request, "web/action_panel.html", context)
    return trigger_client_event(response, "sb-dialog-close")


# -- Progress of one submitted action ----------------------------------------------------


def _progress_context(request: HttpRequest, app: str, key: str) -> dict[str, Any]:
    """What is known about the action submitted with `key`: its operation once the API
    created it, before that the Celery task's state (and its failure message)."""
    op, steps = progress.find_operation(request.user.pk, key=key)
    task_state, task_error, submitted = "", "", ""
    if op is None:
        try:
            submitted = progress.submitted_title(key, request.user.pk)
            result = AsyncResult(key)
            task_state = result.state
            if task_state == "FAILURE":
                task_error = str(result.result)
            elif task_state == "SUCCESS":
                op, steps = progress.find_operation(request.user.pk, pk=result.result)
            elif task_state == "PENDING" and submitted is None:
                task_state, task_error = "UNKNOWN", NO_SUCH_ACTION
        except (redis.exceptions.RedisError, kombu.exceptions.OperationalError, OSError):
            task_state, task_error = "UNKNOWN", "task queue unavailable: progress is unknown"
    finished = bool(
        (op and op.is_finished) or task_error or (task_state == "SUCCESS" and op is None)
    )
    return {
        "key": key,
        "app_name": app,
        "op": op,
        "title": operation_title(op) if op else submitted or "Your request",
        "steps": markup.steps(steps),
        "task_state": task_state,
        "task_error": task_error,
        "finished": finished,
        "url": reverse("action-progress", args=[app, key]),
    }


@require_GET
@login_required
def action_progress(request: HttpRequest, app: str, key: str) -> HttpResponse:
    try:
        uuid.UUID(key)
    except ValueError:
        return _error(request, f"{key!r} is not an action key.", 400)
    panel = _progress_context(request, app, key)
    if panel["task_error"] == NO_SUCH_ACTION and not request.htmx:
        return _error(request, NO_SUCH_ACTION, 404)
    html = render_to_string("web/action_panel.html", {"panel": panel}, request=request)
    if request.htmx and panel["finished"]:
        # 286 tells htmx to stop polling: nothing about this action can change any more.
        # sb-refresh makes the page's polled regions (static/js/poll.js) refresh now, so the
        # Current badge moves when the panel says "succeeded", not up to one poll later.
        return trigger_client_event(HttpResponseStopPolling(html), "sb-refresh")
    return HttpResponse(html)
