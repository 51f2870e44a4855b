"""Small presentation helpers shared by the pages."""

from __future__ import annotations

from datetime import datetime, timedelta

from django import template
from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.html import format_html
from django.utils.timesince import timesince

register = template.Library()


@register.simple_tag
def when(value: datetime | None) -> str:
    """Relative time, with the absolute time in the viewer's zone on hover.

    The middleware activated the viewer's zone, so localtime() here is theirs.
    """
    if value is None:
        return "—"
    local = timezone.localtime(value)
    absolute = date_format(local, "Y-m-d H:i:s T")
    now = timezone.now()
    if abs((now - value).total_seconds()) < 60:
        relative = "just now"
    elif value <= now:
        relative = f"{timesince(value, now, depth=1)} ago"
    else:
        relative = f"in {timesince(now, value, depth=1)}"
    return format_html(
        '<time datetime="{}" title="{}">{}</time>', value.isoformat(), absolute, relative
    )


@register.simple_tag
def clock(value: datetime) -> str:
    """A step's time of day in the viewer's zone, to the second."""
    local = timezone.localtime(value)
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        value.isoformat(),
        date_format(local, "Y-m-d H:i:s T"),
        date_format(local, "H:i:s"),
    )


@register.filter
def seconds(value: int | float | timedelta | None) -> str:
    """3725 -> '1h 2m'; short and exact enough for uptimes and durations."""
    if value is None:
        return "—"
    total = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if total < 10:
        return f"{total:.1f}s" if total % 1 else f"{int(total)}s"
    total = int(total)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


@register.filter
def allows(role, needed: str) -> bool:
    """{% if role|allows:"deployer" %}: the same rule the server enforces."""
    from dashboard.controlplane.models import role_allows

    return role_allows(role, needed)


@register.simple_tag
def refusal(action: str, app, revision) -> str:
    """Why a revision action is unavailable ("" if it is available): web.actions decides."""
    from dashboard.web.actions import revision_refusal

    return revision_refusal(action, app, revision) or ""
