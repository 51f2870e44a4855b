"""Small pieces of markup built in Python: badges, action buttons and times.

They appear in every row of the Versions table, where a template include or a template
tag per piece costs far more than the markup itself (the Django template engine spends
~0.1 ms resolving variables and copying contexts for each include). Here each is one
`format_html` call (this module's, the same escaping as Django's without its lazy-string
checks), which escapes every argument: user-written text is never marked safe without
escaping. The template tags in templatetags/switchboard.py call these same
functions, so a badge or a button looks the same on every page.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe
from django.utils.timesince import timesince

from dashboard.runner_states import RunnerState

if TYPE_CHECKING:
    from dashboard.controlplane.models import Operation, OperationStep


def escape(value: Any) -> str:
    """django.utils.html.conditional_escape without its lazy-string wrapper: markup that
    is already safe (has __html__) as it is, anything else through html.escape(str()),
    which is exactly what Django's escape() does. The wrapper's checks cost more than the
    escaping itself, and a Versions page escapes ~60 values a row."""
    return value.__html__() if hasattr(value, "__html__") else html.escape(str(value))


def format_html(template: str, *args: Any) -> SafeString:
    """django.utils.html.format_html, every argument escaped by escape() above."""
    return SafeString(template.format(*[escape(arg) for arg in args]))


def format_html_join(sep: str, template: str, rows: Iterable[Iterable[Any]]) -> SafeString:
    """django.utils.html.format_html_join, every argument escaped by escape() above."""
    return SafeString(sep.join(format_html(template, *row) for row in rows))


# "2026-01-15 21:00:00 JST": strftime is 5x faster than django.utils.dateformat for
# the same text (%Z is the zone's tzname, as dateformat's "T"), and it runs per row.
ABSOLUTE = "%Y-%m-%d %H:%M:%S %Z"

# A status is told by its text and icon as well as its colour.
_STATUS_ICONS = {
    "deployed": mark_safe('<span aria-hidden="true">✓</span>'),
    "failed": mark_safe('<span aria-hidden="true">✕</span>'),
    "deploying": mark_safe('<span aria-hidden="true" class="spin">◌</span>'),
    "suspended": mark_safe('<span aria-hidden="true" class="pause">❙❙</span>'),
}

CURRENT_BADGE = mark_safe(
    '<span class="badge current" data-testid="current-badge">'
    '<span aria-hidden="true">★</span> Current</span>'
)


# The revision that was Current before this one: the one-click way back.
PREVIOUS_BADGE = mark_safe(
    '<span class="badge previous" data-testid="previous-badge">'
    '<span aria-hidden="true">↶</span> Previous</span>'
)


def current_story(story: Any, now: datetime | None = None) -> SafeString:
    """ "Current since T, set by X from the cli · rollback · “reason”" — a CurrentStory
    (web.actions)."""
    by = format_html(", set by <strong>{}</strong>", story.by) if story.by else ""
    how = (
        format_html(' · <span class="how" data-testid="current-how">{}</span>', story.how)
        if story.how
        else ""
    )
    via = format_html(" from the {}", story.source) if story.source else ""
    reason = (
        format_html(' · <span class="reason">“{}”</span>', story.reason)
        if story.reason
        else mark_safe(' · <span class="muted">no reason given</span>')
    )
    return format_html(
        '<div class="story" data-testid="current-story">Current since {}{}{}{}{}</div>',
        when(story.since, now),
        by,
        via,
        how,
        reason,
    )


def status_badge(status: str, label: str) -> SafeString:
    return format_html(
        '<span class="badge status-{}" data-testid="status-badge">{} {}</span>',
        status,
        _STATUS_ICONS.get(status, ""),
        label,
    )


def action_button(action: str, label: str, why: str, url: str, ref: str, style: str = "") -> str:
    """A button opening `action`'s confirmation dialog from `url`, or, when `why` says
    it is unavailable, a button that stays visible and focusable (aria-disabled, not
    disabled) with the reason in visible text beside it, not only in a tooltip."""
    if why:
        return format_html(
            '<span class="unavailable"><button type="button" class="btn small" aria-disabled="true"'
            ' aria-describedby="why-{0}-{1}" title="{2}" data-testid="{0}-button">{3}</button>'
            '<small id="why-{0}-{1}" class="why" data-testid="why-{0}">{2}</small></span>',
            action,
            ref,
            why,
            label,
        )
    return format_html(
        '<button type="button" class="btn small {}" hx-get="{}" hx-target="#dialog-content"'
        ' hx-swap="innerHTML" data-testid="{}-button">{}</button>',
        style,
        url,
        action,
        label,
    )


_OP_ICONS = {
    "succeeded": _STATUS_ICONS["deployed"],
    "failed": _STATUS_ICONS["failed"],
}


def op_state(op: Operation) -> SafeString:
    return format_html(
        '<span class="badge op-{}" data-testid="op-state">{} {}</span>',
        op.state,
        _OP_ICONS.get(op.state, _STATUS_ICONS["deploying"]),
        op.get_state_display(),
    )


def steps(steps: Iterable[OperationStep | tuple[datetime, str]]) -> SafeString:
    """An operation's steps (models or (at, message) pairs) as <li>s, each with its time
    of day."""
    pairs = (s if isinstance(s, tuple) else (s.at, s.message) for s in steps)
    return format_html_join("", "<li>{} {}</li>", ((clock(at), message) for at, message in pairs))


def when(value: datetime | None, now: datetime | None = None) -> str:
    """Relative time, with the absolute time in the viewer's zone on hover.

    The middleware activated the viewer's zone, so localtime() here is theirs. A table
    passes one `now` for all its rows.
    """
    if value is None:
        return "—"
    now = now or timezone.now()
    absolute = timezone.localtime(value).strftime(ABSOLUTE)
    if abs((now - value).total_seconds()) < 60:
        relative = "just now"
    elif value <= now:
        relative = f"{timesince(value, now, depth=1)} ago"
    else:
        relative = f"in {timesince(now, value, depth=1)}"
    # The absolute time is shown as well as in the tooltip: on a phone there is no hover.
    return format_html(
        '<time datetime="{}" title="{}">{}</time> <span class="abs">{}</span>',
        value.isoformat(),
        absolute,
        relative,
        absolute,
    )


def clock(value: datetime) -> str:
    """A step's time of day in the viewer's zone, to the second."""
    local = timezone.localtime(value)
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        value.isoformat(),
        local.strftime(ABSOLUTE),
        local.strftime("%H:%M:%S"),
    )


# A runner's state, told by colour, icon and word (DESIGN.md section 5's states). The
# icons of the Versions badges mean the same here: ✕ failed, ◌ working on it, ❙❙ paused.
_RUNNER_ICONS = {
    RunnerState.PENDING: _STATUS_ICONS["deploying"],
    RunnerState.SETUP: _STATUS_ICONS["deploying"],
    RunnerState.IDLE: mark_safe('<span aria-hidden="true">○</span>'),
    RunnerState.RUNNING: mark_safe('<span aria-hidden="true">▶</span>'),
    RunnerState.DRAINING: mark_safe('<span aria-hidden="true">↓</span>'),
    RunnerState.TERMINATING: mark_safe('<span aria-hidden="true">↓</span>'),
    RunnerState.TERMINATED: mark_safe('<span aria-hidden="true">■</span>'),
    RunnerState.CRASH_BACKOFF: mark_safe('<span aria-hidden="true">↻</span>'),
    RunnerState.FAILED: _STATUS_ICONS["failed"],
}


def runner_badge(state: str, count: int | None = None) -> SafeString:
    """A runner state badge ("▶ Running"), or with `count` a tally of them ("○ 2 Idle")."""
    label = state.replace("_", " ").capitalize()
    return format_html(
        '<span class="badge runner-{}" data-testid="runner-state" data-state="{}">{} {}</span>',
        state.lower().replace("_", "-"),
        state,
        _RUNNER_ICONS.get(state, ""),
        label if count is None else f"{count} {label}",
    )
