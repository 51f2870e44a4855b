"""`switchboard`: the command-line client of the control API.

Every call goes through dashboard.api_client.ControlApi (source "cli"), so the CLI can do
nothing the API would not let its token do. Failures end the process with a non-zero
status and one line saying why; `--json` on any command prints machine-readable output.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click

from dashboard import httpclient, runner_states
from dashboard.api_client import ApiError, ControlApi
from dashboard.cli import bundle, config, output
from dashboard.controlplane import rules
from dashboard.sdk.parameters import CODE, PARAMETERS

POLL_INTERVAL = 0.3
# While following an operation: how long without any change before saying what it waits
# for, and the longest pause between attempts to reach an API that went away.
QUIET_AFTER = 10.0
RECONNECT_CAP = 5.0
# `apps scale` takes every setting an App declares (DESIGN.md section 3), one flag each.
SCALE_FLAGS = tuple(PARAMETERS)


class Failure(Exception):
    """Ends the command with exit status 1 and this one-line reason."""


# -- plumbing -------------------------------------------------------------------------


class State:
    """Per-invocation state: the lazily built API client and the output mode."""

    def __init__(self) -> None:
        self.json = False
        self.emitted = False
        self.wait = True  # False with --no-wait: report the accepted operation, not its end.
        self.timeout: float | None = None  # --timeout: stop following after this long.
        self._api: ControlApi | None = None
        self.url = ""

    @property
    def api(self) -> ControlApi:
        if self._api is None:
            cfg = config.load()
            self.url = cfg.url
            self._api = ControlApi(cfg.url, cfg.token, source="cli")
        return self._api


def command(group: click.Group, name: str, *, operation: bool = False, **kwargs: Any) -> Callable:
    """Register a command that takes --json and gets the State as its first argument.

    A command that starts an operation also takes --no-wait, the same for every one of them.
    """

    def decorate(func: Callable) -> Callable:
        @group.command(name, **kwargs)
        @click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
        @functools.wraps(func)
        def wrapper(
            as_json: bool, no_wait: bool = False, timeout: float | None = None, **params: Any
        ) -> None:
            state = click.get_current_context().ensure_object(State)
            state.json = state.json or as_json
            state.wait = not no_wait
            state.timeout = timeout
            func(state, **params)

        if operation:
            help_text = "Return once the operation is accepted and print its id."
            wrapper = click.option("--no-wait", is_flag=True, help=help_text)(wrapper)
            wrapper = click.option(
                "--timeout",
                type=click.FloatRange(min=1),
                metavar="SECONDS",
                help="Stop following after this long (exit 1; the operation goes on).",
            )(wrapper)
        return wrapper

    return decorate


def check_rev(rev: str) -> str:
    _hex, why = rules.revision_ref(rev)
    if why is not None:
        raise click.BadParameter(why)
    return rev


strategy_option = click.option(
    "--strategy",
    type=click.Choice(["rolling", "recreate"]),
    default="rolling",
    show_default=True,
    help="rolling: switch once a runner of the new revision is healthy; "
    "recreate: switch at once, the next request cold-starts it.",
)


def check_expected(ctx: click.Context, param: click.Parameter, rev: str | None) -> str | None:
    return check_rev(rev) if rev else None


expect_current_option = click.option(
    "--expect-current",
    "expected_current",
    metavar="REV",
    callback=check_expected,
    help="Act only if REV is still Current (refused, changing nothing, if someone moved it).",
)


def check_app_name(ctx: click.Context, param: click.Parameter, name: str) -> str:
    # The API refuses a bad name only after the whole bundle is uploaded; this is its rule
    # and its message, checked before anything is built or sent.
    if error := rules.app_name_error(name):
        raise click.BadParameter(error)
    return name


def check_role(state: State, needed: str) -> None:
    """Refuse a token whose role is too low before a slow step, with the API's own answer."""
    role = state.api.whoami().get("role")
    if refusal := rules.role_refusal(role, needed):
        raise ApiError(403, "forbidden", refusal)


def page_note(payload: dict, what: str) -> str | None:
    """Where a paged listing's page sits among the others, or None when there is one page."""
    count, page = payload.get("count") or 0, payload.get("page") or 1
    pages = -(-count // (payload.get("page_size") or 1))
    if pages <= 1 and page == 1:
        return None
    if page > pages:
        there = f"{count} {what} on {pages} page(s)" if count else f"there are no {what}"
        return f"page {page} is past the end: {there}"
    more = f"; --page {page + 1} for more" if page < pages else ""
    return f"page {page} of {pages} ({count} {what}){more}"


def unwrap_operation(payload: dict) -> dict:
    return payload.get("operation", payload) if isinstance(payload, dict) else {}


def is_finished(op: dict) -> bool:
    return bool(op.get("finished_at")) or op.get("state") in ("succeeded", "failed", "cancelled")


def waiting_for(op: dict) -> str:
    """What an operation that shows no progress is waiting for, in words."""
    if op.get("state") == "queued":
        return (
            "a worker to pick it up; is the Celery worker running? "
            "(`manage.py up` starts one; its log is var/logs/worker.log)"
        )
    steps = op.get("steps") or []
    last = steps[-1].get("message", "") if steps else ""
    return f"its current step to finish: {last}" if last else "its first step"


def wait_for(state: State, payload: dict) -> dict:
    """Follow an operation until it ends, printing each new step as `HH:MM:SS  message`.

    The operation runs on the server whatever happens to this process or the API, so an
    outage of the API is waited out (saying so), and a long silence is explained.
    """
    op = unwrap_operation(payload)
    if not state.wait:
        # --no-wait answers only that the operation was accepted, so no step is shown, even
        # the ones a quick operation (scale, suspend) already recorded in its first answer.
        return op
    started = last_change = time.monotonic()
    seen, pause = 0, POLL_INTERVAL
    while True:
        steps = op.get("steps") or []
        if not state.json:
            for step in steps[seen:]:
                click.echo(output.progress_line(step.get("at"), step.get("message", "")))
        if len(steps) > seen:
            last_change = time.monotonic()
        seen = max(seen, len(steps))
        if is_finished(op) or not op.get("id"):
            return op
        now = time.monotonic()
        if state.timeout is not None and now - started >= state.timeout:
            raise Failure(
                f"stopped following operation {op['id']} after {state.timeout:g}s; it is "
                f"still {op.get('state')} on the server (`switchboard apps history` shows it)"
            )
        if now - last_change >= QUIET_AFTER:
            last_change = now
            say(
                f"  still {op.get('state')} after {now - started:.0f}s: "
                f"waiting for {waiting_for(op)}",
            )
        time.sleep(pause)
        try:
            op = unwrap_operation(state.api.get_operation(op["id"]))
            pause = POLL_INTERVAL
        except (httpclient.Unavailable, ApiError) as exc:
            if isinstance(exc, ApiError) and exc.status < 500:
                raise
            pause = min(RECONNECT_CAP, max(1.0, pause * 2))
            why = exc.detail if isinstance(exc, httpclient.Unavailable) else exc.message
            say(
                f"  control API unavailable ({why}); still following operation "
                f"{op['id']}, retrying in {pause:g}s",
            )


def say(line: str) -> None:
    """A note about following (not a step): to stderr, so --json output stays clean."""
    click.echo(line, err=True)


def summarise(error: str) -> str:
    """One line for a possibly multi-line error: its first line and, for a traceback, the last."""
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    if not lines:
        return "no reason given"
    return lines[0] if len(lines) == 1 else f"{lines[0]} … {lines[-1]}"


def finish(state: State, op: dict, done: str, extra: dict | None = None) -> None:
    """Report an operation's outcome; a failed one ends the process with status 1.

    Without waiting (--no-wait) the outcome is only that the API accepted the operation,
    even when a quick one has finished already: every command answers --no-wait alike.
    """
    if state.json:
        output.emit_json({"operation": op, **(extra or {})})
        state.emitted = True  # The operation, error included, is the JSON answer.
    kind = str(op.get("kind", "operation")).replace("_", "-")
    if op.get("state") == "failed":
        raise Failure(f"{kind} failed: {summarise(op.get('error') or '')}")
    if op.get("state") == "cancelled":
        # e.g. "deploy cancelled: superseded by ada's rollback to 1a2b3c4d"
        raise Failure(f"{kind} {summarise(op.get('error') or 'cancelled')}")
    if state.json:
        return
    if state.wait and is_finished(op):
        click.echo(done)
    else:
        click.echo(f"{kind} accepted: operation {op.get('id')} ({op.get('state', 'queued')})")


def name_of(user: str | None) -> str:
    return user or "-"


def setting(record: dict, name: str) -> Any:
    settings = record.get("settings") or {}
    return settings.get(name, record.get(name))


def status_label(value: Any) -> str:
    return str(value or "-").capitalize()


# -- the command tree ------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Deploy and operate Switchboard apps.

    Reads SWITCHBOARD_URL and SWITCHBOARD_TOKEN, or the config file `manage.py up` writes.
    """
    ctx.ensure_object(State)


@cli.group()
def apps() -> None:
    """Apps, their revisions, scaling and history."""


@cli.group()
def runners() -> None:
    """Stop or kill one runner."""


# -- deploy ---------------------------------------------------------------------------


def parse_annotations(pairs: tuple[str, ...]) -> dict[str, str]:
    annotations = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--annotation")
        annotations[key.strip()] = value
    return annotations


@command(cli, "deploy", operation=True)
@click.argument("target", metavar="FILE.py::Class")
@click.option(
    "--app-name", required=True, callback=check_app_name, help="The app (alias) to deploy to."
)
@strategy_option
@click.option("--reset-scale", is_flag=True, help="Apply the code's runtime-tunable values.")
@click.option("--message", "-m", default="", help="What changed, shown in list-rev.")
@click.option(
    "--annotation",
    "annotations",
    multiple=True,
    metavar="KEY=VALUE",
    help="A label kept with the revision, e.g. ticket=OPS-42 (repeatable).",
)
@click.option(
    "--auth",
    "auth_mode",
    type=click.Choice(["private", "shared", "public"]),
    help="Who may call the app through the gateway (default: keep the app's; new apps private).",
)
@click.option(
    "--promote",
    is_flag=True,
    help="Make it Current even if a rollback holds the app (and release the hold).",
)
@click.option(
    "--check",
    is_flag=True,
    help="Change nothing: show the revision this deploy would create (import check, "
    "settings and where each comes from, diff against Current).",
)
def deploy(
    state: State,
    target: str,
    app_name: str,
    strategy: str,
    reset_scale: bool,
    message: str,
    annotations: tuple[str, ...],
    auth_mode: str | None,
    promote: bool,
    check: bool,
) -> None:
    """Bundle the directory holding FILE.py and deploy it as a new revision of an app."""
    notes = parse_annotations(annotations)
    data, entrypoint = bundle.build(target)
    # The API checks the role only once the whole bundle is uploaded; one small request
    # first lets a token that may not deploy be refused without that upload.
    check_role(state, "deployer")
    if check:
        preview = state.api.preview_deploy(
            app_name,
            data,
            entrypoint,
            strategy=strategy,
            reset_scale=reset_scale,
            message=message,
            annotations=notes,
            auth_mode=auth_mode,
        )
        show_preview(state, preview)
        return
    if state.wait and not state.json:  # A progress line, like the operation's steps.
        click.echo(
            f"{output.clock(None)}  uploading {len(data) / 1024:.1f} KiB bundle "
            f"({entrypoint}) to app {app_name}"
        )
    payload = state.api.deploy(
        app_name,
        data,
        entrypoint,
        strategy=strategy,
        reset_scale=reset_scale,
        message=message,
        annotations=notes,
        auth_mode=auth_mode,
        promote=promote,
    )
    op = wait_for(state, payload)
    revision = payload.get("revision") or {}
    rev_id = revision.get("id") or op.get("revision") or ""
    done = f"revision {output.short_id(rev_id)} of {app_name} is deployed and Current"
    if (op.get("result") or {}).get("promoted") is False:
        # The step that says why (held since when, by whose rollback, how to release).
        held = [
            s.get("message", "")
            for s in op.get("steps") or []
            if s.get("message", "").startswith("deployed; not made Current")
        ]
        note = held[-1] if held else f"deployed; not made Current: {app_name} is held"
        done = f"revision {output.short_id(rev_id)} of {app_name} is {note}"
    finish(state, op, done, {"revision": {"id": rev_id}})


SOURCES = {
    "code": "the code",
    "default": "default",
    "previous_current": "previous Current",
}


def show_preview(state: State, preview: dict) -> None:
    if state.json:
        output.emit_json(preview)
        return
    app = preview.get("app")
    click.echo(
        f"deploy preview of app {app}: nothing was deployed or changed"
        + ("" if preview.get("app_exists") else f" (the first deploy creates app {app})")
    )
    click.echo(f"entrypoint  {preview.get('entrypoint')}")
    click.echo(f"endpoints   {', '.join(preview.get('endpoints') or []) or 'none'}")
    click.echo(f"strategy    {preview.get('strategy')}")
    click.echo("")
    rows = [
        (
            r.get("name"),
            r.get("kind"),
            r.get("value"),
            SOURCES.get(r.get("source"), r.get("source")),
        )
        for r in preview.get("settings") or []
    ]
    click.echo(output.table(("setting", "kind", "value", "from"), rows))
    changes = preview.get("diff")
    click.echo("")
    if changes is None:
        click.echo("no Current revision to compare with")
    else:
        click.echo(f"compared with Current revision {output.short_id(preview.get('current'))}:")
        show_diff(changes, text=True)


def _size(value: Any) -> str:
    return "-" if value is None else f"{value} B"


def show_diff(result: dict, *, text: bool) -> None:
    """A diff as people read one: what changed, the settings table, then the files."""
    for item in result.get("fields") or []:
        if item.get("changed"):
            click.echo(f"{item['name']}: {item.get('a')!r} → {item.get('b')!r}")
        else:
            click.echo(f"{item['name']}: unchanged ({output.cell(item.get('a'))})")
    notes = [n for n in result.get("annotations") or [] if n.get("change") != "same"]
    if notes:
        click.echo("annotations:")
        marks = {"added": "+", "removed": "-", "changed": "~"}
        for n in notes:
            value = n["b"] if n["change"] != "removed" else n["a"]
            was = f" (was {n['a']})" if n["change"] == "changed" else ""
            click.echo(f"  {marks[n['change']]} {n['key']}={value}{was}")
    else:
        click.echo("annotations: unchanged")
    rows = [
        (
            ("* " if r.get("changed") else "  ") + str(r.get("name")),
            r.get("kind"),
            r.get("a"),
            r.get("b"),
        )
        for r in result.get("settings") or []
    ]
    click.echo(output.table(("setting", "kind", "a", "b"), rows))
    files = result.get("files") or {}
    if not files.get("available"):
        click.echo(f"files: {files.get('message')}")
        return
    counts = files.get("counts") or {}
    click.echo(
        f"files: {counts.get('added', 0)} added, {counts.get('removed', 0)} removed, "
        f"{counts.get('changed', 0)} changed, {counts.get('unchanged', 0)} unchanged"
    )
    for entry in files.get("entries") or []:
        sizes = {
            "added": _size(entry.get("size_b")),
            "removed": _size(entry.get("size_a")),
            "changed": f"{_size(entry.get('size_a'))} → {_size(entry.get('size_b'))}",
        }[entry["change"]]
        skipped = f": {entry['skipped']}" if entry.get("skipped") else ""
        click.echo(f"  {entry['change']:<8} {entry['path']} ({sizes}){skipped}")
        if text and entry.get("diff"):
            click.echo(entry["diff"], nl=False)
    if files.get("message"):
        click.echo(files["message"])


# -- apps: reads ----------------------------------------------------------------------


@command(apps, "list")
def apps_list(state: State) -> None:
    """Every app with its Current revision."""
    items = state.api.list_apps()
    if state.json:
        output.emit_json({"apps": items})
        return
    if not items:
        click.echo(
            "no apps yet: deploy one with `switchboard deploy FILE.py::Class --app-name NAME`"
        )
        return
    rows = []
    for app in items:
        current = app.get("current_revision") or {}
        last = app.get("last_operation") or {}
        previous = app.get("previous_revision") or {}
        rows.append(
            (
                app.get("name"),
                output.short_id(current.get("id")) if current else "-",
                output.short_id(previous.get("id")) if previous else "-",
                f"{app.get('status')}, HELD" if app.get("held") else app.get("status"),
                current.get("message"),
                app.get("auth_mode"),
                app.get("network"),
                output.relative(output.parse_time(current.get("created_at"))),
                f"{str(last.get('kind', '')).replace('_', '-')} {last.get('state', '')}".strip(),
                # The server's one-line summary (controlplane/health.py), Current's last 5 min.
                (app.get("health") or {}).get("summary"),
            )
        )
    headers = (
        "app",
        "current",
        "previous",
        "status",
        "message",
        "auth",
        "network",
        "deployed",
        "last operation",
        "health (5 min)",
    )
    click.echo(output.table(headers, rows))
    for app in items:
        if app.get("held"):
            click.echo(held_line(app))


def held_line(app: dict) -> str:
    """The note under a listing of a held app: since when, by whom, and how to release."""
    hold = app.get("hold") or {}
    since = output.parse_time(hold.get("since"))
    reason = f" ({hold['reason']})" if hold.get("reason") else ""
    name = app.get("name")
    return (
        f"{name} is HELD since {output.absolute(since)} by {hold.get('by') or 'someone'}'s "
        f"rollback{reason}: new deploys are not made Current — `switchboard apps release "
        f"{name}` or deploy with --promote"
    )


def _current_id(app: dict) -> str | None:
    return (app.get("current_revision") or {}).get("id")


def normalise_revision(rev: dict, current_id: str | None, previous_id: str | None = None) -> dict:
    current = rev.get("current")
    if current is None:
        current = bool(current_id) and str(rev.get("id")) == str(current_id)
    settings = dict(rev.get("settings") or {})
    return {
        "id": rev.get("id"),
        "short_id": output.short_id(rev.get("id")),
        "status": rev.get("status"),
        "current": bool(current),
        "previous": bool(previous_id) and str(rev.get("id")) == str(previous_id),
        "created_at": rev.get("created_at"),
        "message": rev.get("message", ""),
        "annotations": rev.get("annotations") or {},
        "deployed_by": name_of(rev.get("deployed_by")),
        "machine_type": setting(rev, "machine_type"),
        "settings": settings,
        "entrypoint": rev.get("entrypoint"),
        "error": rev.get("error", ""),
    }


def _seconds(value: Any) -> str:
    return "-" if value is None else f"{value}s"


@command(apps, "list-rev")
@click.argument("app")
@click.option(
    "--status",
    type=click.Choice(["deploying", "deployed", "failed", "suspended"]),
    help="Only revisions with this status.",
)
@click.option("--page", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--page-size", type=click.IntRange(1, rules.MAX_PAGE_SIZE), default=50, show_default=True
)
def list_rev(state: State, app: str, status: str | None, page: int, page_size: int) -> None:
    """The revisions of APP, newest first, with status, Current marker and settings."""
    payload = state.api.list_revisions(app, status=status, page=page, page_size=page_size)
    raw = payload.get("revisions", [])
    about = state.api.get_app(app)  # Current, Previous and the hold live on the app.
    previous_id = (about.get("previous_revision") or {}).get("id")
    revisions = [normalise_revision(r, _current_id(about), previous_id) for r in raw]
    if state.json:
        output.emit_json(
            {
                "revisions": revisions,
                **{k: v for k, v in payload.items() if k != "revisions"},
                "held": about.get("held", False),
                "hold": about.get("hold"),
            }
        )
        return
    if not revisions:
        click.echo(
            page_note(payload, "revisions")
            or f"app {app} has no revisions" + (f" with status {status}" if status else "")
        )
        return
    rows = []
    for rev in revisions:
        s = rev["settings"]
        created = output.parse_time(rev["created_at"])
        rows.append(
            (
                rev["short_id"],
                status_label(rev["status"]),
                "Current" if rev["current"] else ("Previous" if rev["previous"] else ""),
                f"{output.relative(created)} ({output.absolute(created)})",
                rev["message"],
                rev["deployed_by"],
                rev["machine_type"],
                _seconds(s.get("keep_alive")),
                f"{s.get('min_concurrency', '-')}/{s.get('max_concurrency', '-')}",
                f"{s.get('concurrency_buffer', '-')} (+{s.get('concurrency_buffer_perc', 0)}%)",
                _seconds(s.get("scaling_delay")),
                _seconds(s.get("request_timeout")),
                s.get("max_multiplexing"),
                _seconds(s.get("startup_timeout")),
            )
        )
    headers = (
        "id",
        "status",
        "current",
        "created",
        "message",
        "deployed by",
        "machine",
        "keep_alive",
        "min/max",
        "buffer",
        "delay",
        "req_timeout",
        "mux",
        "startup",
    )
    click.echo(output.table(headers, rows, max_width=48))
    if about.get("held"):
        click.echo(held_line(about))
    if note := page_note(payload, "revisions"):
        click.echo(note)


@command(apps, "diff")
@click.argument("app")
@click.argument("a")
@click.argument("b")
@click.option("--stat", is_flag=True, help="List the changed files without their text diff.")
def apps_diff(state: State, app: str, a: str, b: str, stat: bool) -> None:
    """What changed from revision A to revision B of APP: entrypoint, message,
    annotations, settings and the bundle's files."""
    check_rev(a)
    check_rev(b)
    result = state.api.diff(app, a, b)
    if state.json:
        output.emit_json(result)
        return
    left, right = result.get("a") or {}, result.get("b") or {}

    def label(side: dict) -> str:
        current = ", Current" if side.get("current") else ""
        return f"{side.get('short_id')} ({status_label(side.get('status'))}{current})"

    click.echo(f"{app}: a = {label(left)}, b = {label(right)}")
    show_diff(result, text=not stat)


@command(apps, "runners")
@click.argument("app")
def apps_runners(state: State, app: str) -> None:
    """The runners serving APP and their states."""
    items = state.api.runners(app)
    if state.json:
        output.emit_json({"runners": items})
        return
    if not items:
        click.echo(f"app {app} has no runners")
        return
    now = datetime.now(UTC)
    nodes = any("node" in r for r in items)
    rows = []
    for r in items:
        started = output.parse_time(r.get("started_at"))
        # A runner that is gone (TERMINATED, FAILED) stopped ageing when it ended.
        ended = output.parse_time(r.get("ended_at"))
        gone = ended is not None or r.get("state") in runner_states.GONE
        stop_at = None if gone else output.parse_time(r.get("idle_shutdown_at"))
        if started and not gone:
            uptime = output.duration((now - started).total_seconds())
        elif started and ended:
            uptime = "ran " + output.duration((ended - started).total_seconds())
        else:
            uptime = "-"
        rows.append(
            (
                r.get("id"),
                str(r.get("state", "-")).upper()
                + (" (crash-looping)" if r.get("crash_looping") else ""),
                output.short_id(r.get("revision")),
                r.get("in_flight"),
                uptime,
                output.duration(max(0.0, (stop_at - now).total_seconds())) if stop_at else "-",
                r.get("restarts"),
                r.get("pid"),
                r.get("error"),
            )
            # A backend with runners on several machines (Ray) says each one's node.
            + ((runner_states.node_label(r) or "-",) if nodes else ())
        )
    headers = (
        "runner",
        "state",
        "revision",
        "in-flight",
        "uptime",
        "idle stop in",
        "restarts",
        "pid",
        "error",
    ) + (("node",) if nodes else ())
    click.echo(output.table(headers, rows))


@command(apps, "history")
@click.argument("app")
@click.option("--page", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--page-size", type=click.IntRange(1, rules.MAX_PAGE_SIZE), default=50, show_default=True
)
def apps_history(state: State, app: str, page: int, page_size: int) -> None:
    """Every operation on APP, newest first: who, source, reason, outcome, duration."""
    payload = state.api.history(app, page=page, page_size=page_size)
    items = payload.get("operations", [])
    if state.json:
        output.emit_json(payload)
        return
    if not items:
        click.echo(page_note(payload, "operations") or f"app {app} has no recorded operations")
        return
    rows = []
    for op in items:
        created = output.parse_time(op.get("created_at"))
        took = op.get("duration_ms")
        rev = op.get("revision")
        rows.append(
            (
                f"{output.relative(created)} ({output.absolute(created)})",
                str(op.get("kind", "-")).replace("_", "-"),
                op.get("state"),
                output.short_id(rev),
                op.get("requester"),
                op.get("source"),
                op.get("reason"),
                output.duration(took / 1000) if isinstance(took, int | float) else "-",
                op.get("error"),
            )
        )
    headers = (
        "when",
        "operation",
        "outcome",
        "revision",
        "by",
        "source",
        "reason",
        "took",
        "error",
    )
    click.echo(output.table(headers, rows, max_width=40))
    if note := page_note(payload, "operations"):
        click.echo(note)


# -- apps: mutations ------------------------------------------------------------------


@command(apps, "set-rev", operation=True)
@click.argument("app")
@click.argument("rev")
@strategy_option
@click.option("--reason", default="", help="Why, recorded in the app's history.")
@expect_current_option
def set_rev(
    state: State, app: str, rev: str, strategy: str, reason: str, expected_current: str | None
) -> None:
    """Point APP's alias at revision REV (a rollback or roll-forward).

    An operation running on APP (a slow deploy, say) is cancelled at its next safe point:
    a rollback never waits. A rollback to an older revision holds APP: later deploys are
    not made Current until `switchboard apps release APP` (or a deploy with --promote).
    """
    check_rev(rev)
    payload = state.api.set_rev(
        app, rev, strategy=strategy, reason=reason, expected_current=expected_current
    )
    op = wait_for(state, payload)
    finish(state, op, f"{app} now serves revision {output.short_id(rev)} ({strategy})")


@command(apps, "rollout", operation=True)
@click.argument("app")
@click.option("--force", is_flag=True, help="Kill runners at once; in-flight requests are dropped.")
@click.option("--reason", default="", help="Why, recorded in the app's history.")
@expect_current_option
def rollout(state: State, app: str, force: bool, reason: str, expected_current: str | None) -> None:
    """Restart every runner of APP's Current revision (graceful unless --force)."""
    payload = state.api.rollout(app, force=force, reason=reason, expected_current=expected_current)
    op = wait_for(state, payload)
    finish(state, op, f"rolled out {app} ({'force' if force else 'graceful'})")


@command(apps, "delete-rev", operation=True)
@click.argument("app")
@click.argument("rev")
@click.option("--reason", default="", help="Why, recorded in the app's history.")
@expect_current_option
def delete_rev(state: State, app: str, rev: str, reason: str, expected_current: str | None) -> None:
    """Delete revision REV of APP (never the Current one)."""
    check_rev(rev)
    payload = state.api.delete_revision(app, rev, reason=reason, expected_current=expected_current)
    op = wait_for(state, payload)
    finish(state, op, f"deleted revision {output.short_id(rev)} of {app}")


def _scale_notes(payload: dict, op: dict) -> list[str]:
    notes: list[str] = []
    for source in (payload, op, op.get("result") or {}):
        for note in source.get("notes") or []:
            if note not in notes:
                notes.append(str(note))
    return notes


def _scale_flags(func: Callable) -> Callable:
    """One `apps scale` flag per parameter of the catalogue, saying its range and kind."""
    for param in reversed(PARAMETERS.values()):
        if param.name == "machine_type":
            # The installation's machine types are the server's to say; it names them
            # when it refuses one.
            text = "a type from the catalogue (e.g. XS, S, M, L)"
            kind = str
        else:
            text = f"{param.help} ({param.numeric_range.replace('–', '-')})"
            kind = int
        text = f"Code-specific: {text}." if param.kind == CODE else f"{text[0].upper()}{text[1:]}."
        func = click.option("--" + param.name.replace("_", "-"), type=kind, help=text)(func)
    return func


@command(apps, "scale", operation=True)
@click.argument("app")
@_scale_flags
@click.option("--reason", default="", help="Why, recorded in the app's history.")
def scale(state: State, app: str, reason: str, **flags: Any) -> None:
    """Change APP's live settings at once.

    Code-specific values (max-multiplexing, startup-timeout, machine-type) changed here
    are reset by the next deploy or set-rev.
    """
    values = {name: flags[name] for name in SCALE_FLAGS if flags.get(name) is not None}
    if not values:
        raise click.UsageError("give at least one setting to change, e.g. --max-concurrency 4")
    payload = state.api.scale(app, values, reason=reason)
    op = wait_for(state, payload)
    notes = _scale_notes(payload, op)
    if state.json:
        finish(state, op, "", {"notes": notes, "settings": payload.get("settings")})
        return
    if not state.wait:  # Waiting, they were printed among the operation's steps.
        for note in notes:
            click.echo(f"note: {note}")
    changed = ", ".join(f"{k}={v}" for k, v in values.items())
    finish(state, op, f"scaled {app}: {changed}")


@command(apps, "suspend", operation=True)
@click.argument("app")
@click.argument("rev", required=False)
@click.option("--reason", default="", help="Why, recorded in the app's history.")
@expect_current_option
def suspend(
    state: State, app: str, rev: str | None, reason: str, expected_current: str | None
) -> None:
    """Take REV (default: the Current revision) out of service."""
    if rev:
        check_rev(rev)
    answer = state.api.suspend(app, rev, reason=reason, expected_current=expected_current)
    op = wait_for(state, answer)
    what = f"revision {output.short_id(rev)}" if rev else "the Current revision"
    finish(state, op, f"suspended {what} of {app}")


@command(apps, "resume", operation=True)
@click.argument("app")
@click.argument("rev", required=False)
@click.option("--reason", default="", help="Why, recorded in the app's history.")
def resume(state: State, app: str, rev: str | None, reason: str) -> None:
    """Put a Suspended REV (default: the Current revision) back in service."""
    if rev:
        check_rev(rev)
    op = wait_for(state, state.api.resume(app, rev, reason=reason))
    what = f"revision {output.short_id(rev)}" if rev else "the Current revision"
    finish(state, op, f"resumed {what} of {app}")


@command(apps, "cancel", operation=True)
@click.argument("app")
@click.option(
    "--operation",
    "operation_id",
    metavar="ID",
    help="The operation to cancel (default: the one in progress on APP).",
)
@click.option("--reason", default="", help="Why, recorded on the operation.")
def cancel(state: State, app: str, operation_id: str | None, reason: str) -> None:
    """Cancel the operation in progress on APP: it stops at its next safe point and ends
    cancelled (a deploy's revision ends Failed); nothing is left half switched."""
    if operation_id is None:
        history = state.api.history(app, page_size=20).get("operations", [])
        running = [op for op in history if not op.get("finished_at") and not op.get("cancel")]
        if not running:
            raise Failure(f"no operation is in progress on {app}; there is nothing to cancel")
        operation_id = running[0]["id"]
    op = wait_for(state, state.api.cancel_operation(app, operation_id, reason=reason))
    kind = str(op.get("kind", "operation")).replace("_", "-")
    if state.json:
        output.emit_json({"operation": op})
        state.emitted = True
    elif state.wait and is_finished(op):
        if op.get("state") == "cancelled":
            click.echo(f"cancelled {kind} operation {op.get('id')} of {app}")
        else:  # It reached its end before its next safe point.
            click.echo(f"{kind} operation {op.get('id')} ended {op.get('state')} before it stopped")
    else:
        click.echo(
            f"cancel requested: {kind} operation {op.get('id')} stops at its next safe point"
        )


@command(apps, "release", operation=True)
@click.argument("app")
@click.option("--reason", default="", help="Why, recorded in the app's history.")
def release(state: State, app: str, reason: str) -> None:
    """Release the hold a rollback set on APP: the next deploy becomes Current again."""
    op = wait_for(state, state.api.release(app, reason=reason))
    finish(state, op, f"released the hold on {app}: the next deploy becomes Current")


@command(apps, "hold-policy", operation=True)
@click.argument("app")
@click.option(
    "--on/--off",
    "hold",
    required=True,
    help="--on (the default for every app): a rollback holds APP; --off: it does not.",
)
@click.option("--reason", default="", help="Why, recorded in the app's history.")
def hold_policy(state: State, app: str, hold: bool, reason: str) -> None:
    """Whether a rollback of APP holds it (later deploys not made Current until released)."""
    op = wait_for(state, state.api.hold_policy(app, hold, reason=reason))
    what = "a rollback holds it" if hold else "a rollback no longer holds it"
    finish(state, op, f"hold on rollback is {'on' if hold else 'off'} for {app}: {what}")


@command(apps, "pin", operation=True)
@click.argument("app")
@click.argument("rev")
@click.option("--reason", default="", help="Why, recorded in the app's history.")
def pin(state: State, app: str, rev: str, reason: str) -> None:
    """Pin REV of APP: retention never deletes it and delete-rev refuses it until unpinned."""
    op = wait_for(state, state.api.pin(app, check_rev(rev), reason=reason))
    finish(state, op, f"pinned revision {output.short_id(rev)} of {app}")


@command(apps, "unpin", operation=True)
@click.argument("app")
@click.argument("rev")
@click.option("--reason", default="", help="Why, recorded in the app's history.")
def unpin(state: State, app: str, rev: str, reason: str) -> None:
    """Unpin REV of APP: retention may delete it again once it is old enough."""
    op = wait_for(state, state.api.unpin(app, check_rev(rev), reason=reason))
    finish(state, op, f"unpinned revision {output.short_id(rev)} of {app}")


def _retention_plan(plan: dict) -> None:
    """What a dry run would delete, and why every other revision stays."""
    doomed = plan.get("would_delete", [])
    state_word = "on" if plan.get("enabled") else "off (nothing is deleted while it is off)"
    click.echo(f"retention keeps the newest {plan.get('keep')} revisions; it is {state_word}")
    if doomed:
        click.echo(f"would delete {len(doomed)} revision(s):")
        rows = [(r["short_id"], status_label(r["status"]), r["why"]) for r in doomed]
        click.echo(output.table(("id", "status", "why"), rows, max_width=90))
    else:
        click.echo("would delete nothing")
    kept = plan.get("kept", [])
    if kept:
        click.echo(f"keeps {len(kept)} revision(s):")
        rows = [(r["short_id"], status_label(r["status"]), r["why"]) for r in kept]
        click.echo(output.table(("id", "status", "why"), rows, max_width=90))


@command(apps, "retention", operation=True)
@click.argument("app")
@click.option(
    "--keep", type=click.IntRange(1, 1000), metavar="N", help="Keep the newest N (1-1000)."
)
@click.option("--on/--off", "enabled", default=None, help="Turn retention on or off for APP.")
@click.option(
    "--dry-run", is_flag=True, help="List what would be deleted and why the rest stays; no change."
)
@click.option("--reason", default="", help="Why, recorded in the app's history.")
def retention(
    state: State, app: str, keep: int | None, enabled: bool | None, dry_run: bool, reason: str
) -> None:
    """Show or change how many revisions of APP retention keeps (default 20).

    Older revisions are deleted after each deploy and periodically, never Current,
    Previous, a pinned one, the target of an operation in progress or the last 3 Deployed.
    """
    changing = keep is not None or enabled is not None
    if dry_run:
        plan = (
            state.api.set_retention(app, keep=keep, enabled=enabled, dry_run=True)
            if changing
            else state.api.retention(app, dry_run=True)
        )
        if state.json:
            output.emit_json(plan)
        else:
            _retention_plan(plan)
        return
    if not changing:
        settings = state.api.retention(app)
        if state.json:
            output.emit_json(settings)
        else:
            on = "on" if settings.get("enabled") else "off"
            click.echo(f"retention of {app} is {on}: it keeps the newest {settings.get('keep')}")
        return
    answer = state.api.set_retention(app, keep=keep, enabled=enabled, reason=reason)
    op = wait_for(state, answer)
    after = answer.get("retention") or {}
    on = "on" if after.get("enabled") else "off"
    finish(
        state,
        op,
        f"retention of {app} is {on}: it keeps the newest {after.get('keep')}",
        {"retention": after},
    )


@command(apps, "network", operation=True)
@click.argument("app")
@click.argument("network", type=click.Choice(["off", "outbound"]))
@click.option("--reason", default="", help="Why, recorded in the app's history.")
def network(state: State, app: str, network: str, reason: str) -> None:
    """Outbound network for APP's runners: off (the default) or outbound (admins only).

    outbound lets its code open connections to other machines, never to this host's
    loopback services. Runners started afterwards have it; running ones keep theirs.
    """
    op = wait_for(state, state.api.set_network(app, network, reason=reason))
    finish(state, op, f"network of {app} is {network} for runners started from now on")


# -- runners and logs -----------------------------------------------------------------


@command(runners, "stop", operation=True)
@click.argument("runner")
@click.option("--replace", is_flag=True, help="Start a replacement before stopping it.")
@click.option("--reason", default="", help="Why, recorded in the app's history.")
def runner_stop(state: State, runner: str, replace: bool, reason: str) -> None:
    """Stop RUNNER gracefully: it finishes its in-flight requests first."""
    op = wait_for(state, state.api.stop_runner(runner, replace=replace, reason=reason))
    finish(state, op, f"stopped runner {runner}" + (" (replaced)" if replace else ""))


@command(runners, "kill", operation=True)
@click.argument("runner")
@click.option("--reason", default="", help="Why, recorded in the app's history.")
def runner_kill(state: State, runner: str, reason: str) -> None:
    """Kill RUNNER at once; its in-flight requests are dropped."""
    op = wait_for(state, state.api.kill_runner(runner, reason=reason))
    finish(state, op, f"killed runner {runner}")


@command(cli, "logs")
@click.argument("app")
@click.option("--revision", "rev", help="Only this revision's runners.")
@click.option("--runner", help="Only this runner.")
@click.option("--tail", type=click.IntRange(1, 10000), default=200, show_default=True)
def logs(state: State, app: str, rev: str | None, runner: str | None, tail: int) -> None:
    """The last lines runners of APP wrote to stdout and stderr."""
    if rev and runner:
        raise click.UsageError("give --revision or --runner, not both")
    if rev:
        check_rev(rev)
    text = state.api.logs(app, revision=rev, runner=runner, tail=tail)
    if state.json:
        output.emit_json({"app": app, "revision": rev, "runner": runner, "logs": text})
    elif not text.strip():
        click.echo(f"no logs yet: no runner of {runner or rev or app} has written any", err=True)
    else:
        click.echo(text, nl=not text.endswith("\n"))


# -- webhooks (admin) -----------------------------------------------------------------


@cli.group()
def webhooks() -> None:
    """Endpoints that receive signed deliveries when operations end (admins only)."""


@command(webhooks, "list")
def webhooks_list(state: State) -> None:
    """Every registered endpoint."""
    items = state.api.list_webhooks()
    if state.json:
        output.emit_json({"webhooks": items})
        return
    if not items:
        click.echo("no webhooks yet: add one with `switchboard webhooks add URL`")
        return
    rows = [
        (
            w.get("id"),
            w.get("url"),
            w.get("app") or "all apps",
            ", ".join(w.get("events") or []) or "all events",
            w.get("format"),
            w.get("description"),
        )
        for w in items
    ]
    click.echo(output.table(("id", "url", "app", "events", "format", "description"), rows))


@command(webhooks, "add")
@click.argument("url")
@click.option("--app", help="Only this app's events (default: every app).")
@click.option(
    "--events",
    "events",
    multiple=True,
    metavar="EVENT",
    help="An event to send, e.g. set_rev.succeeded (repeat, or comma-separate; default: all).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "slack"]),
    default="json",
    show_default=True,
    help='slack: {"text": ...}, which Slack-compatible incoming webhooks accept.',
)
@click.option("--description", default="", help="A note shown in listings.")
def webhooks_add(
    state: State, url: str, app: str | None, events: tuple[str, ...], fmt: str, description: str
) -> None:
    """Register URL; prints its signing secret, which is not shown again."""
    names = [e.strip() for item in events for e in item.split(",") if e.strip()]
    payload = state.api.add_webhook(url, app=app, events=names, format=fmt, description=description)
    if state.json:
        output.emit_json(payload)
        return
    hook = payload["webhook"]
    click.echo(f"webhook {hook['id']} added: {hook['url']} ({hook.get('app') or 'all apps'})")
    click.echo(f"signing secret (shown only now): {payload['secret']}")


@command(webhooks, "remove")
@click.argument("webhook_id", metavar="ID", type=int)
def webhooks_remove(state: State, webhook_id: int) -> None:
    """Delete endpoint ID and its delivery records."""
    payload = state.api.remove_webhook(webhook_id)
    if state.json:
        output.emit_json(payload)
        return
    click.echo(f"webhook {webhook_id} removed ({payload['deleted']['url']})")


@command(webhooks, "deliveries")
@click.argument("webhook_id", metavar="ID", type=int)
@click.option("--page", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--page-size", type=click.IntRange(1, rules.MAX_PAGE_SIZE), default=50, show_default=True
)
def webhooks_deliveries(state: State, webhook_id: int, page: int, page_size: int) -> None:
    """Deliveries to endpoint ID, newest first: event, status, attempts, response code."""
    payload = state.api.webhook_deliveries(webhook_id, page=page, page_size=page_size)
    if state.json:
        output.emit_json(payload)
        return
    items = payload.get("deliveries", [])
    if not items:
        click.echo(page_note(payload, "deliveries") or f"webhook {webhook_id} has no deliveries")
        return
    rows = [
        (
            output.relative(output.parse_time(d.get("created_at"))),
            d.get("event"),
            d.get("status"),
            d.get("attempts"),
            d.get("response_code"),
            d.get("error"),
        )
        for d in items
    ]
    click.echo(output.table(("when", "event", "status", "attempts", "code", "error"), rows))
    if note := page_note(payload, "deliveries"):
        click.echo(note)


@command(webhooks, "test")
@click.argument("webhook_id", metavar="ID", type=int)
def webhooks_test(state: State, webhook_id: int) -> None:
    """Queue a test event to endpoint ID; see it with `webhooks deliveries ID`."""
    delivery = state.api.test_webhook(webhook_id)
    if state.json:
        output.emit_json({"delivery": delivery})
        return
    click.echo(
        f"test event queued (delivery {delivery['id']}); "
        f"`switchboard webhooks deliveries {webhook_id}` shows how it went"
    )


# -- entry point ----------------------------------------------------------------------


def _fail(state: State, code: str, message: str, status: int) -> int:
    line = " ".join(message.split())
    if state.json and not state.emitted:
        output.emit_json({"error": {"code": code, "message": line}})
    click.echo(f"error: {line}", err=True)
    return status


def main(argv: list[str] | None = None) -> int:
    state = State()
    try:
        cli.main(args=argv, prog_name="switchboard", standalone_mode=False, obj=state)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.Abort:
        return _fail(state, "aborted", "aborted", 130)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "switchboard"
        return _fail(state, "usage", f"{exc.format_message()} (see `{where} --help`)", 2)
    except click.ClickException as exc:
        return _fail(state, "usage", exc.format_message(), exc.exit_code)
    except ApiError as exc:
        return _fail(state, exc.code, exc.message, 1)
    except httpclient.Unavailable as exc:
        return _fail(
            state, "unreachable", f"control API unreachable at {state.url}: {exc.detail}", 1
        )
    except (config.ConfigError, bundle.BundleError, Failure) as exc:
        return _fail(state, type(exc).__name__.lower(), str(exc), 1)
    except KeyboardInterrupt:
        return _fail(
            state, "interrupted", "interrupted (the operation continues on the server)", 130
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
