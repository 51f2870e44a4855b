from __future__ import annotations

import time
import zoneinfo
from urllib.parse import urlencode, urlsplit

from django import db
from django.conf import settings
from django.shortcuts import render, resolve_url
from django.urls import resolve
from django.utils import timezone
from django_htmx.http import HttpResponseClientRedirect


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


class HtmxSignInMiddleware:
    """A signed-out htmx request sends the whole page to the sign-in form.

    When a session ends (signed out in another tab, expired) while a page polls, the
    polled fragment's answer is login_required's redirect; htmx would follow it and swap
    the sign-in page into the table or panel. HX-Redirect makes the browser navigate
    instead, and `next` is the page the user was on, not the fragment's URL.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            request.htmx
            and response.status_code == 302
            and urlsplit(response["Location"]).path == resolve_url(settings.LOGIN_URL)
        ):
            page = request.htmx.current_url_abs_path or "/"
            return HttpResponseClientRedirect(
                f"{resolve_url(settings.LOGIN_URL)}?{urlencode({'next': page})}"
            )
        return response


class DatabaseLostMiddleware:
    """A database connection lost mid-request is a 503 that says what to do, never a 500.

    The pool's check (CONN_HEALTH_CHECKS without a pool) already replaces a connection
    that died between requests; this covers one that dies during a request. A read
    (GET/HEAD) is run once more on a fresh connection; a write is refused, since whether
    it committed cannot be known here, with the advice to retry (an Idempotency-Key makes
    an API retry safe).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, (db.OperationalError, db.InterfaceError)):
            return None
        db.connections.close_all()
        if request.method in ("GET", "HEAD") and not getattr(request, "_db_retried", False):
            request._db_retried = True
            match = resolve(request.path_info)
            try:
                return match.func(request, *match.args, **match.kwargs)
            except (db.OperationalError, db.InterfaceError):
                db.connections.close_all()
        message = (
            "the database connection was lost while answering; nothing is known to have "
            "changed. Retry in a moment (with the same Idempotency-Key for an API call)."
        )
        if request.path.startswith("/api/"):
            from dashboard.controlplane.api.errors import error_response

            response = error_response(503, "database_unavailable", message)
        else:
            response = render(request, "web/error.html", {"message": message, "status": 503})
            response.status_code = 503
        response["Retry-After"] = "2"
        return response
