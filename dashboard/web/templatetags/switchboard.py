"""Small presentation helpers shared by the pages."""

from __future__ import annotations

from datetime import datetime, timedelta

from django import template
from django.urls import reverse

from dashboard import durations
from dashboard.web import markup

register = template.Library()


@register.simple_tag
def when(value: datetime | None) -> str:
    """Relative time, with the absolute time in the viewer's zone on hover."""
    return markup.when(value)


@register.simple_tag
def clock(value: datetime) -> str:
    """A step's time of day in the viewer's zone, to the second."""
    return markup.clock(value)


@register.simple_tag
def status_badge(status: str, label: str) -> str:
    return markup.status_badge(status, label)


@register.simple_tag
def runner_badge(state: str, count: int | None = None) -> str:
    return markup.runner_badge(state, count)


@register.simple_tag
def op_state(op) -> str:
    return markup.op_state(op)


@register.simple_tag
def action_button(
    action: str,
    label: str,
    why: str,
    app_name: str,
    query: str = "",
    ref: str = "",
    style: str = "",
) -> str:
    """{% action_button "rollout" "Rollout…" why app.name ref="app" %}: see markup.action_button."""
    url = reverse("confirm", args=[app_name, action]) + "?" + query
    return markup.action_button(action, label, why, url, ref, style)


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


@register.simple_tag
def current_story(story) -> str:
    """{% current_story story %}: "Current since T, set by X (rollback)…", see markup."""
    return markup.current_story(story)
