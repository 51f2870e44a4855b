"""Plain-text output of the CLI: aligned tables, relative and absolute times, progress lines."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import click

from dashboard import durations


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def relative(moment: datetime | None, now: datetime | None = None) -> str:
    """'just now', '5 minutes ago', '3 days ago' (or 'in ...' for the future)."""
    if moment is None:
        return "-"
    now = now or datetime.now(UTC)
    seconds = int((now - moment).total_seconds())
    future, seconds = seconds < 0, abs(seconds)
    if seconds < 10:
        return "just now"
    units = ((86400 * 365, "year"), (86400, "day"), (3600, "hour"), (60, "minute"), (1, "second"))
    size, unit = next((size, unit) for size, unit in units if seconds >= size)
    count = seconds // size
    text = f"{count} {unit}{'' if count == 1 else 's'}"
    return f"in {text}" if future else f"{text} ago"


def absolute(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "-"


def clock(moment: datetime | None) -> str:
    """HH:MM:SS in the user's local time zone, for progress lines."""
    return (moment or datetime.now(UTC)).astimezone().strftime("%H:%M:%S")


def duration(seconds: float | None) -> str:
    return durations.human(seconds, missing="-")


def short_id(value: Any) -> str:
    text = str(value or "")
    return text.replace("-", "")[:8] if text else "-"


def cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(value)
    # One row per record: user-written messages must not break the table's lines.
    return " ".join(text.split())


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], max_width: int = 60) -> str:
    """An aligned plain-text table; long cells are cut with an ellipsis."""
    cells = [[cell(v) for v in row] for row in rows]
    cells = [[c if len(c) <= max_width else c[: max_width - 1] + "…" for c in row] for row in cells]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def progress_line(at: str | None, message: str) -> str:
    return f"{clock(parse_time(at))}  {message}"
