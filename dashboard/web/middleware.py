from __future__ import annotations

import time
import zoneinfo

from django.utils import timezone


class ViewerTimezoneMiddleware:
    """Show times in the viewer's zone: base.html stores the browser's zone in a cookie.

    The database and every computation stay in UTC; only rendering is localised.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        name = request.COOKIES.get("tz", "")
        try:
            timezone.activate(zoneinfo.ZoneInfo(name)) if name else timezone.deactivate()
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            timezone.deactivate()
        return self.get_response(request)


class ServerTimingMiddleware:
    """Every answer says how long the server spent on it (`Server-Timing: app;dur=<ms>`).

    Browsers show it in their network panel, and bench/run.py reads it to measure the
    progress poll as gunicorn serves it. Outermost, so every other middleware counts.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        response["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.2f}"
        return response
