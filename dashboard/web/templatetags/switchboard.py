"""Small presentation helpers shared by the pages."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django import template
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.timesince import timesince

from dashboard import durations

register = template.Library()


BADGES = "web/badges.html#"


def badge(name: str, **context: Any) -> SafeString:
    """One of web/badges.html's partials rendered from Python (a table's render_ method)."""
    return mark_safe(render_to_string(BADGES + name, context))  # Auto-escaped by the template.


@register.inclusion_tag(BADGES + "when")
def when(value: datetime | None) -> dict:
    """Relative time, with the absolute time in the viewer's zone on hover."""
    return {"value": value}


@register.simple_tag
def ago(value: datetime) -> str:
    """ "3 hours ago", "in 2 days", "just now": the largest unit only."""
    now = timezone.now()
    if abs((now - value).total_seconds()) < 60:
        return "just now"
    if value <= now:
        return f"{timesince(value, now, depth=1)} ago"
    return f"in {timesince(now, value, depth=1)}"


# "2026-01-15 21:00:00 JST": a time in full, in the viewer's zone.
ABSOLUTE = "%Y-%m-%d %H:%M:%S %Z"


@register.filter
def absolute(value: datetime) -> str:
    """The time in full in the viewer's zone, as tooltips and the Versions table show it."""
    return timezone.localtime(value).strftime(ABSOLUTE)


@register.filter
def clock(value: datetime) -> SafeString:
    """A step's time of day in the viewer's zone, to the second, in full on hover.

    A filter rather than a partial: an action panel's poll renders one per step, and
    Django's date filter and a partial per step were most of the poll's rendering
    (BENCHMARKS.md, "The progress poll under ASGI").
    """
    local = timezone.localtime(value)
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        value.isoformat(),
        local.strftime(ABSOLUTE),
        local.strftime("%H:%M:%S"),
    )


@register.inclusion_tag(BADGES + "status-badge")
def status_badge(status: str, label: str) -> dict:
    return {"status": status, "label": label}


@register.inclusion_tag(BADGES + "runner-badge")
def runner_badge(state: str, count: int | None = None) -> dict:
    """A runner state badge ("▶ Running"), or with `count` a tally of them ("○ 2 Idle")."""
    return {
        "state": state,
        "css": state.lower().replace("_", "-"),
        "label": state.replace("_", " ").capitalize(),
        "count": count,
    }


@register.inclusion_tag(BADGES + "op-state")
def op_state(op) -> dict:
    return {"op": op}


@register.inclusion_tag(BADGES + "action-button")
def action_button(
    action: str,
    label: str,
    why: str,
    app_name: str,
    query: str = "",
    ref: str = "",
    style: str = "",
) -> dict:
    """{% action_button "rollout" "Rollout…" why app.name ref="app" %}: a button opening
    `action`'s confirmation dialog, or, when `why` says it is unavailable, the reason."""
    url = reverse("confirm", args=[app_name, action]) + "?" + query
    return {"action": action, "label": label, "why": why, "url": url, "ref": ref, "style": style}


@register.filter
def pairs(mapping: dict) -> list:
    """{% for key, value in mapping|pairs %}: a user-written dict's items, even when a key
    is named "items" (which `mapping.items` would look up instead)."""
    return list(mapping.items())


@register.filter
def pin_note(revision) -> str:
    """Who pinned `revision` and when (controlplane.retention)."""
    from dashboard.controlplane.retention import pin_note

    return pin_note(revision)


@register.filter
def seconds(value: int | float | timedelta | None) -> str:
    """3725 -> '1h 2m', 0.37 -> '370 ms': as the CLI says it (dashboard/durations.py)."""
    return durations.human(value)


@register.simple_tag
def user_role(user):
    """{% user_role user as header_role %}: the header's role badge on every page, including
    those rendered without a view's context (404, 403, the login page)."""
    from dashboard.controlplane.models import role_of

    return role_of(user)


@register.filter
def allows(role, needed: str) -> bool:
    """{% if role|allows:"deployer" %}: the same rule the server enforces."""
    from dashboard.controlplane.rules import role_allows

    return role_allows(role, needed)


@register.simple_tag
def refusal(action: str, app, revision) -> str:
    """Why a revision action is unavailable ("" if it is available): web.actions decides."""
    from dashboard.web.actions import revision_refusal

    return revision_refusal(action, app, revision) or ""


@register.inclusion_tag(BADGES + "current-story")
def current_story(story) -> dict:
    """{% current_story story %}: "Current since T, set by X (rollback)…"."""
    return {"story": story}
