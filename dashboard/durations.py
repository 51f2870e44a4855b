"""How long something took or has left, said the same way in the dashboard and the CLI."""

from __future__ import annotations

from datetime import timedelta


def human(value: float | timedelta | None, missing: str = "—") -> str:
    """0.37 -> '370 ms', 3.25 -> '3.2s', 125 -> '2m 5s', 7260 -> '2h 1m'.

    Under a second in milliseconds: a runner whose setup() failed at once "ran 370 ms",
    not "ran 0s". Tenths only while they still matter (under ten seconds).
    """
    if value is None:
        return missing
    total = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if 0 < total < 1:
        return f"{total * 1000:.0f} ms"
    if total < 10:
        return f"{total:.1f}s" if total % 1 else f"{int(total)}s"
    hours, rest = divmod(int(total), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"
