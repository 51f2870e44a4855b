"""The dashboard's pages and fragments: one small function view per URL.

Views only read the database. Every change goes: confirmation dialog -> POST here
(validated) -> Celery task (tasks.py) -> control API, and the page watches the
resulting operation through its live stream (live.py), or by polling without one.
"""

from __future__ import annotations

import hashlib
import uuid
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode

import kombu.exceptions
import redis.exceptions
from celery.result import AsyncResult
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db import connection, transaction
from django.db.models import Max, OuterRef, Prefetch, Q, Subquery
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseStopPolling, reswap, retarget, trigger_client_event
from django_tables2 import RequestConfig

from dashboard.controlplane import (
    diff,
    health,
    operations,
    refusals,
    retention,
    revisions,
    runtime_client,
    tokens,
)
from dashboard.controlplane.api.errors import error_response
from dashboard.controlplane.errors import Conflict, ControlError
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
from dashboard.web import live, progress
from dashboard.web import runners as runner_data
from dashboard.web.access import (
    APP_RELATED,
    BadInput,
    get_app,
    require_role,
)
from dashboard.web.actions import (
    ACTIONS,
    ActionSpec,
    app_refusal,
    cli_equivalent,
    current_story,
    live_settings,
    operation_title,
    operation_words,
    revision_refusal,
    rollback_changes,
    switch_word,
)
from dashboard.web.actions import title as action_title
from dashboard.web.forms import ExpectingForm
from dashboard.web.tables import AppsTable, HistoryTable, RunnersTable, VersionsTable
from dashboard.web.tasks import submit_action
from dashboard.web.templatetags.switchboard import badge

VERSIONS_PER_PAGE = 25
HISTORY_PER_PAGE = VERSIONS_PER_PAGE
QUEUE_DOWN = "Task queue unavailable — nothing was changed. Try again in a moment."
NO_SUCH_ACTION = "You submitted no action with this key, or it is more than a day old."
# Longer than any id, message search or name needs; a longer one is refused, not cut.
SEARCH_MAX = 100
# A search filters, so it may name fewer of an id's characters than a reference (8).
SEARCH_MIN_ID = 4
# A queued action not taken by a worker after this long says so and what to check.
STALL_SECONDS = 10


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
        App.objects.select_related(*APP_RELATED).annotate(last_op_id=Subquery(last_op[:1]))
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
        app.story = current_story(app)
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
    # with 10,000 operations as with 10 (grouping all of the app's operations by their
    # steps would grow with them).
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
    query = {k: v for k, v in request.GET.items() if k not in ("stamp", "panel", "panels")}
    return request.path + "?" + urlencode({**query, "stamp": stamp})


# The most action panels one refresh of the Versions page renders (the page sends the
# keys of those still running); more is refused, not cut.
PANELS_MAX = 10


def _panel_keys(request: HttpRequest) -> list[str]:
    """The keys of the action panels a refresh re-renders with the table (?panels=K1,K2)."""
    keys = [k for k in request.GET.get("panels", "").split(",") if k]
    if len(keys) > PANELS_MAX:
        raise BadInput(f"At most {PANELS_MAX} panels refresh at once; {len(keys)} were asked.")
    for key in keys:
        try:
            uuid.UUID(key)
        except ValueError:
            raise BadInput(f"{key!r} is not an action key.") from None
    return keys


@contextmanager
def _one_snapshot():
    """Every query of the block reads the database as of one moment.

    Under READ COMMITTED each query sees the commits made before it started, so an alias
    switch committed between the table's query and a panel's would show the panel saying
    "now points to X" over a table whose Current is still the old one. One REPEATABLE
    READ transaction (read only, so it takes no lock) renders both from the same state.
    """
    # Inside a transaction already (a test's), the snapshot is that transaction's. SQLite
    # is left as it is: its transactions here are IMMEDIATE, which would make a page
    # view take the write lock.
    if connection.in_atomic_block or connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        yield


@require_GET
@login_required
def versions(request: HttpRequest, app: str) -> HttpResponse:
    try:
        panel_keys = _panel_keys(request)
    except BadInput as exc:
        return _error(request, exc.message, exc.status)
    with _one_snapshot():
        return _versions(request, _app_or_404(app), panel_keys)


def _versions(request: HttpRequest, app: App, panel_keys: list[str]) -> HttpResponse:
    status = request.GET.get("status", "")
    filter_error = ""
    if status and status not in RevisionStatus.values:
        filter_error = f"Unknown status {status!r}; showing all. Allowed: " + ", ".join(
            RevisionStatus.labels
        )
        status = ""
    query = request.GET.get("q", "").strip()
    if len(query) > SEARCH_MAX:
        return _error(
            request,
            f"Search for at most {SEARCH_MAX} characters (an id, or words of a message, an "
            f"author or an annotation); yours has {len(query)}.",
            400,
        )
    stamp = versions_stamp(app)
    if request.htmx and request.GET.get("stamp") == stamp and not panel_keys:
        # Nothing changed since the browser's copy: 204 makes htmx keep it as is. Running
        # panels show their elapsed time, so a refresh that carries them always renders.
        return HttpResponse(status=204)

    role = role_of(request.user)
    revisions = (
        Revision.objects.filter(app=app)
        .select_related("deployed_by", "pinned_by")
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
    if query:
        revisions = revisions.filter(_search(query))
    empty = f"No {RevisionStatus(status).label} revisions." if status else "No revisions yet."
    if query:
        empty = f"No revision matches {query!r}."
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
        "live_url": live.stream_url(request, app.name),
        "can_deploy": role_allows(role, Role.DEPLOYER),
        "can_admin": role_allows(role, Role.ADMIN),
        "rollout_refusal": app_refusal("rollout", app),
        "settings_now": live_settings(app),
        "query": query,
        "search_max": SEARCH_MAX,
        "story": current_story(app),
        "jump_url": _jump_to_current(app),
        "previous_refusal": (
            revision_refusal("rollback", app, app.previous_revision)
            if app.previous_revision
            else ""
        ),
        # "Roll back to previous", or "Switch to previous" after a rollback (it is newer).
        "previous_label": (
            switch_word(app.current_revision, app.previous_revision).replace(" to", "")
            + " to previous"
            if app.previous_revision
            else ""
        ),
        "health": health.for_app(app),
    }
    if request.htmx:
        # The table and the page's running panels in one answer, from one snapshot: the
        # panels are swapped out of band in the same swap, so the two never disagree.
        context["panels"] = [_progress_context(request, app.name, key) for key in panel_keys]
        return render(request, "web/versions.html#versions-refresh", context)
    panel_key = request.GET.get("panel")
    if panel_key:
        context["panel"] = _progress_context(request, app.name, panel_key)
    return render(request, "web/versions.html", context)


def _search(query: str) -> Q:
    """Revisions whose id starts with `query`, or whose message, author or annotations
    contain it (case-insensitive)."""
    found = (
        Q(message__icontains=query)
        | Q(deployed_by__username__icontains=query)
        | Q(annotations__icontains=query)
    )
    normal = query.lower().replace("-", "")
    if SEARCH_MIN_ID <= len(normal) <= 32 and revisions.is_hex(normal):
        low, high = revisions.id_range(normal)
        found |= Q(id__gte=low, id__lte=high)
    return found


def _jump_to_current(app: App) -> str:
    """The unfiltered Versions page holding the Current row, scrolled to it."""
    current = app.current_revision
    if current is None:
        return ""
    newer = (
        Revision.objects.filter(app=app)
        .filter(
            Q(created_at__gt=current.created_at)
            | Q(created_at=current.created_at, id__gt=current.id)
        )
        .count()
    )
    page = newer // VERSIONS_PER_PAGE + 1
    return reverse("versions", args=[app.name]) + f"?page={page}#rev-{current.short_id}"


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
    ops = Operation.objects.filter(app=app).order_by("-created_at", "-id")
    table = HistoryTable(ops)
    RequestConfig(request, paginate={"per_page": HISTORY_PER_PAGE}).configure(table)
    # The page's operations, loaded once (the table renders these same instances), and
    # in one more query the creation times that tell a rollback from a roll forward.
    page_ops = [row.record for row in table.page.object_list]
    ids = {op.revision_id for op in page_ops if op.revision_id} | {
        op.params.get("from_revision") for op in page_ops if op.params.get("from_revision")
    }
    created = {
        str(pk): at
        for pk, at in Revision.objects.filter(pk__in=ids).values_list("id", "created_at")
    }
    for op in page_ops:
        op.words = operation_words(op, created)
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
        revision = revisions.resolve(app, data.get("rev", ""))
        if refusal := refusals.of_revision(spec.kind, app, revision):
            raise refusal
        title = spec.title
        if spec.name == "rollback":  # A newer revision than Current is a roll forward.
            title = switch_word(app.current_revision, revision)
        return {
            "revision": revision,
            "params": {"revision": str(revision.id)},
            "title": title,
            "action_title": f"{title} {revision.short_id}",
        }
    if spec.target == "runner":
        runner_id = data.get("runner", "")
        if not runner_id:
            raise BadInput("Which runner? Give its id as ?runner=RUNNER_ID.", status=400)
        runner = runtime_client.find_runner(runner_id, app=app.name)
        if refusal := refusals.runner(runner):
            raise refusal
        return {
            "runner": runner,
            "title": spec.title,
            "params": {"runner": runner_id},
            "action_title": action_title(spec, runner_id),
        }
    if refusal := refusals.of_app(spec.kind, app):
        raise refusal
    return {"params": {}, "title": spec.title, "action_title": action_title(spec, "")}


def _form(spec: ActionSpec, app: App, request: HttpRequest):
    extra = {"current": live_settings(app)} if spec.name == "scale" else {}
    if spec.name == "retention":
        extra = {"current": {"keep": app.retention_keep, "enabled": app.retention_enabled}}
    if request.method == "POST":
        return spec.form(request.POST, **extra)
    return spec.form(initial=_fresh_initial(app), **extra)


def _fresh_initial(app: App, **values: Any) -> dict[str, Any]:
    """A new dialog's hidden values: a new key, and the Current it shows."""
    current = str(app.current_revision_id) if app.current_revision_id else ""
    return {**values, "key": uuid.uuid4(), "expected_current": current}


def _enqueue(
    spec: ActionSpec, app: App, params: dict[str, Any], user, key: str, title: str
) -> None:
    _enqueue_named(spec.name, app, params, user, key, title)


def _enqueue_named(
    action: str, app: App, params: dict[str, Any], user, key: str, title: str
) -> None:
    """Hand the action to Celery, or raise BadInput if the queue cannot take it.

    A fresh broker connection (not the pool) means a Redis outage is noticed now, and
    retry=False makes it fail at once instead of leaving the user waiting.
    """
    from dashboard.celery import app as celery_app

    try:
        progress.remember(key, user.pk, title, cli_equivalent(action, app.name, params))
        with celery_app.connection_for_write() as connection:
            submit_action.apply_async(
                args=[action, app.name, params, tokens.issue_dashboard_token(user), key],
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
        changed = None
        if request.method == "POST" and form.is_valid():
            try:
                if isinstance(form, ExpectingForm):
                    # The control API checks again under the app's lock; checking here
                    # first lets the dialog show the new state and ask again at once.
                    operations.check_expected_current(
                        app_obj, form.cleaned_data["expected_current"]
                    )
            except Conflict as exc:
                if exc.code != "current_changed":
                    raise
                changed = {"message": exc.message, "story": current_story(app_obj)}
                kept = {k: v for k, v in form.cleaned_data.items() if k not in ("key",)}
                form = spec.form(initial=_fresh_initial(app_obj, **kept))
            else:
                key = str(form.cleaned_data["key"])
                params = {**form.params(), **target["params"]}
                _enqueue(spec, app_obj, params, request.user, key, target["action_title"])
                return _submitted(request, app_obj, key)
    except ControlError as exc:  # BadInput, or the control plane's own refusal.
        return _error(request, exc.message, exc.status)
    context = {
        "app": app_obj,
        "spec": spec,
        "form": form,
        "role": role_of(request.user),
        "changed": changed,
        "story": current_story(app_obj),
        **target,
    }
    if spec.name == "rollback":
        context["changes"] = rollback_changes(app_obj, target["revision"])
        context["unchanged"] = [c for c in context["changes"] if not c["changed"]]
        context["current"] = app_obj.current_revision
    if spec.name == "retention":
        context["plan"] = retention.dry_run(app_obj)  # What the settings in effect delete.
    response = render(
        request, "web/confirm.html#dialog" if request.htmx else "web/confirm.html", context
    )
    if changed and not request.htmx:
        # Nothing was sent: the page asks again. In the dialog (htmx) it is a form shown
        # again, answered 200 as an invalid form is: the dialog says what happened.
        response.status_code = 409
    if request.htmx and request.method == "POST":
        # An invalid form (or one about a Current that moved) is shown again, with its
        # errors, in the dialog it came from.
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
    submitted_at, cli = None, ""
    if op is None:
        try:
            found = progress.submitted(key, request.user.pk)
            submitted, submitted_at, cli = found if found else (None, None, "")
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
    # Waiting for a worker: the dashboard's (task PENDING) or the control plane's (the
    # operation still Queued). Both are Celery workers; say how long, and past
    # STALL_SECONDS what to check, so a stopped worker does not look like a slow action.
    waiting_since = None
    if not finished:
        if op is None and task_state == "PENDING":
            waiting_since = submitted_at
        elif op is not None and op.state == "queued":
            waiting_since = op.created_at
    waited = int((timezone.now() - waiting_since).total_seconds()) if waiting_since else None
    return {
        "key": key,
        "app_name": app,
        "op": op,
        "title": operation_title(op) if op else submitted or "Your request",
        "steps": badge("steps", steps=steps),
        "task_state": task_state,
        "task_error": task_error,
        "finished": finished,
        "url": reverse("action-progress", args=[app, key]),
        "waited": waited,
        "stalled": waited is not None and waited >= STALL_SECONDS,
        "cli": cli,
        # The panel is its requester's own action, and every action needs a deployer, so
        # the button is offered without another query for the role; the cancel view
        # checks the role (a user demoted since is refused there).
        "can_cancel": bool(op and not op.is_finished and op.cancel_requested_at is None),
        "cancel_url": reverse("action-cancel", args=[app, key]),
        "suspended_current": bool(
            op
            and op.kind == OperationKind.SUSPEND
            and op.state == "succeeded"
            and App.objects.filter(name=app, current_revision_id=op.revision_id).exists()
        ),
    }


@require_POST
@login_required
def action_cancel(request: HttpRequest, app: str, key: str) -> HttpResponse:
    """The Cancel button of a running action's panel: ask the control API to stop the
    panel's operation at its next safe point, through the same queue as every action.
    Answers the panel again, now saying the cancellation was asked for."""
    require_role(request, Role.DEPLOYER)
    try:
        uuid.UUID(key)
    except ValueError:
        return _error(request, f"{key!r} is not an action key.", 400)
    op, _ = progress.find_operation(request.user.pk, key=key)
    if op is None:
        return _error(request, NO_SUCH_ACTION, 404)
    if op.is_finished:
        return _error(
            request,
            f"This {op.get_kind_display()} already ended {op.get_state_display()}; "
            "there is nothing to cancel.",
            409,
        )
    try:
        app_obj = get_app(app)
        if op.app_id != app_obj.pk:
            raise BadInput(f"This action is not about app {app_obj.name!r}.", status=404)
        cancel_key = str(uuid.uuid4())
        params = {"operation": str(op.id), "reason": "from the dashboard's action panel"}
        _enqueue_named(
            "cancel", app_obj, params, request.user, cancel_key, f"Cancel {operation_title(op)}"
        )
    except BadInput as exc:
        return _error(request, exc.message, exc.status)
    panel = _progress_context(request, app, key)
    panel.update(can_cancel=False, cancel_sent=True)
    return render(request, "web/action_panel.html", {"panel": panel})


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
