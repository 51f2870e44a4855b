"""Who is calling: bearer tokens (API `sbt_...` or dashboard `sbd_...`) and their role.

The API is token-only (no session cookies), which is why its views are csrf_exempt.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import wraps

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from dashboard.controlplane import rules, tokens
from dashboard.controlplane.api.errors import error_response
from dashboard.controlplane.errors import BadRequest, ControlError, Forbidden, Unauthenticated
from dashboard.controlplane.models import ApiToken, Role, Source, hash_token, role_of
from dashboard.controlplane.operations import Actor

# Writing last_used_at on every call would turn each read into a write; a minute is precise
# enough to tell whether a token is still in use.
TOUCH_EVERY = timedelta(seconds=60)
HOW_TO = "send 'Authorization: Bearer <token>'; `manage.py create_token USERNAME` makes one"


def authenticate(request: HttpRequest) -> tuple[object, Role]:
    header = request.headers.get("Authorization", "")
    if not header:
        raise Unauthenticated(f"no credentials: {HOW_TO}")
    scheme, _, raw = header.partition(" ")
    raw = raw.strip()
    if scheme.lower() != "bearer" or not raw:
        raise Unauthenticated(f"the Authorization header is not a bearer token: {HOW_TO}")
    if raw.startswith(ApiToken.PREFIX):
        token = (
            ApiToken.objects.select_related("user", "user__switchboard_profile")
            .filter(token_hash=hash_token(raw))
            .first()
        )
        if token is None:
            raise Unauthenticated("invalid API token")
        if token.revoked_at:
            raise Unauthenticated(f"API token {token.hint}… was revoked")
        role = token.effective_role
        if role is None:
            raise Unauthenticated(f"the user of API token {token.hint}… is inactive")
        now = timezone.now()
        if token.last_used_at is None or token.last_used_at < now - TOUCH_EVERY:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, role
    if raw.startswith(tokens.PREFIX):
        user = tokens.user_from_dashboard_token(raw)
        role = role_of(user)
        if user is None or role is None:
            raise Unauthenticated("invalid or expired dashboard token")
        return user, role
    raise Unauthenticated(
        f"unrecognised token: API tokens start with {ApiToken.PREFIX!r}; {HOW_TO}"
    )


def _source(request: HttpRequest) -> str:
    source = request.headers.get("X-Switchboard-Source", "").strip().lower() or Source.API
    if source not in Source.values:
        raise BadRequest(
            f"X-Switchboard-Source must be one of {', '.join(Source.values)}, got {source!r}"
        )
    return source


def _idempotency_key(request: HttpRequest) -> str:
    key = request.headers.get("Idempotency-Key", "").strip()
    if len(key) > 200:
        raise BadRequest("Idempotency-Key is longer than 200 characters")
    return key


def api_view(**roles: Role) -> Callable:
    """Authenticate, authorise by HTTP method (GET=Role.VIEWER, POST=...), render errors.

    The view finds the caller in request.actor.
    """
    allowed = {method.upper(): role for method, role in roles.items()}

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            try:
                user, role = authenticate(request)
                needed = allowed.get(request.method)
                if needed is None:
                    response = error_response(
                        405,
                        "method_not_allowed",
                        f"{request.method} is not allowed here; use {', '.join(allowed)}",
                    )
                    response["Allow"] = ", ".join(allowed)
                    return response
                if refusal := rules.role_refusal(role, needed):
                    raise Forbidden(refusal, details={"role": role, "needed": needed})
                request.actor = Actor(
                    user=user,
                    role=role,
                    source=_source(request),
                    idempotency_key=_idempotency_key(request) if request.method != "GET" else "",
                )
                return view(request, *args, **kwargs)
            except ControlError as exc:
                return error_response(exc.status, exc.code, exc.message, exc.details)
            except RequestDataTooBig:
                return error_response(413, "too_large", "request body is too large")

        return wrapper

    return decorate
