"""Who is calling: bearer tokens (API `sbt_...` or dashboard `sbd_...`) and their role;
and `api_view`, the one wrapper every control API view goes through.

The API is token-only (no session cookies), which is why its views are csrf_exempt.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from datetime import timedelta
from functools import wraps
from typing import Any

from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from pydantic import BaseModel, ValidationError

from dashboard.controlplane import rules, tokens
from dashboard.controlplane.api import body as bodies
from dashboard.controlplane.api import schemas
from dashboard.controlplane.api.contract import Route
from dashboard.controlplane.api.errors import error_response
from dashboard.controlplane.errors import (
    BadRequest,
    ControlError,
    Forbidden,
    TooLarge,
    Unauthenticated,
)
from dashboard.controlplane.models import ApiToken, Role, Source, hash_token, role_of
from dashboard.controlplane.operations import Actor

# Writing last_used_at on every call would turn each read into a write; a minute is precise
# enough to tell whether a token is still in use.
TOUCH_EVERY = timedelta(seconds=60)
HOW_TO = "send 'Authorization: Bearer <token>'; `manage.py create_token USERNAME` makes one"


# Failed token checks are counted by django-axes, as failed sign-ins are, under this name:
# no username can contain '<', so it never shares a count with a person's sign-ins, and
# with AXES_LOCKOUT_PARAMETERS [username, ip_address] it counts per client address.
API_TOKEN_CREDENTIAL = {"username": "<api token>"}


def _refused(request: HttpRequest, exc: Unauthenticated) -> ControlError:
    """A failed token check: counted, and 429 once the address is over the limit.

    A valid token is never refused for its address's failures: the CLI, scripts and the
    dashboard's worker usually share one address (loopback), and one misconfigured script
    must not lock them all out. Tokens carry 256 random bits (or a signature), so the
    count is there to make guessing loud and visible (AccessAttempt), not to slow it.
    """
    if not AxesProxyHandler.is_allowed(request, dict(API_TOKEN_CREDENTIAL)):
        return ControlError(
            f"{exc.message}; too many failed token checks from your address, so further "
            "ones are refused until the cool-off has passed",
            status=429,
            code="too_many_failed_attempts",
        )
    user_login_failed.send(sender=__name__, credentials=dict(API_TOKEN_CREDENTIAL), request=request)
    # axes flags the request when this failure reached the limit, and its middleware would
    # then swap this JSON answer for its lockout page: the answer stays the API's 401.
    request.axes_locked_out = False
    return exc


def authenticate(request: HttpRequest) -> tuple[object, Role, bool]:
    """The caller's user, role, and whether they used a dashboard (sbd_) token."""
    header = request.headers.get("Authorization", "")
    if not header:
        raise Unauthenticated(f"no credentials: {HOW_TO}")
    try:
        return _authenticate(request, header)
    except Unauthenticated as exc:
        raise _refused(request, exc) from None


def _authenticate(request: HttpRequest, header: str) -> tuple[object, Role, bool]:
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
        return token.user, role, False
    if raw.startswith(tokens.PREFIX):
        user = tokens.user_from_dashboard_token(raw)
        role = role_of(user)
        if user is None or role is None:
            raise Unauthenticated("invalid or expired dashboard token")
        return user, role, True
    raise Unauthenticated(
        f"unrecognised token: API tokens start with {ApiToken.PREFIX!r}; {HOW_TO}"
    )


def _source(request: HttpRequest, dashboard_token: bool) -> str:
    """Where the call comes from, as History records it.

    `dashboard` is the dashboard's own worker: its Celery tasks call with sbd_ tokens,
    which only the web process issues (signed with SECRET_KEY). An API token claiming
    `dashboard` is refused, so History's "dashboard" means what it says.
    """
    if dashboard_token:
        return Source.DASHBOARD
    source = request.headers.get("X-Switchboard-Source", "").strip().lower() or Source.API
    if source not in Source.values:
        raise BadRequest(
            f"X-Switchboard-Source must be one of {', '.join(Source.values)}, got {source!r}"
        )
    if source in (Source.DASHBOARD, Source.RETENTION):
        owner = "the dashboard's own worker" if source == Source.DASHBOARD else "retention"
        raise Forbidden(
            f"X-Switchboard-Source {source!r} is reserved for {owner}; "
            "an API token may send 'cli' or 'api'",
            details={"allowed": [Source.CLI, Source.API]},
            code="source_not_allowed",
        )
    return source


def _idempotency_key(request: HttpRequest) -> str:
    key = request.headers.get("Idempotency-Key", "").strip()
    if len(key) > 200:
        raise BadRequest("Idempotency-Key is longer than 200 characters")
    return key


def _read_body(request: HttpRequest, fields: tuple[str, ...], form: bool) -> dict[str, Any]:
    """Parse and check the body of a mutating call; return what the idempotency key binds.

    JSON views find the parsed object in request.input. A form view (deploy) reads
    request.POST and request.FILES itself; here only their names are checked.
    """
    if form:
        # Reading a form spools its files: refuse an oversized one by its declared length
        # before reading anything (for JSON, request.body does this itself).
        length = int(request.META.get("CONTENT_LENGTH") or 0)
        if length > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            raise TooLarge(
                f"the request body is {length} bytes; the most allowed is "
                f"{settings.DATA_UPLOAD_MAX_MEMORY_SIZE}",
                details={"size": length, "max": settings.DATA_UPLOAD_MAX_MEMORY_SIZE},
            )
        bodies.check_fields([*request.POST, *request.FILES], fields)
        request.input = {}
        return {name: request.POST.getlist(name) for name in request.POST}
    request.input = bodies.parse_object(request.body)
    bodies.check_fields(request.input, fields)
    return request.input


def _file_hashes(request: HttpRequest) -> dict[str, str]:
    hashes = {}
    for name, upload in request.FILES.items():
        digest = hashlib.sha256()
        for chunk in upload.chunks():
            digest.update(chunk)
        upload.seek(0)
        hashes[name] = digest.hexdigest()
    return hashes


def _range(model: type[BaseModel], name: str) -> str:
    metadata = model.model_fields[name].metadata if name in model.model_fields else []
    low = next((m.ge for m in metadata if getattr(m, "ge", None) is not None), None)
    high = next((m.le for m in metadata if getattr(m, "le", None) is not None), None)
    return f"{low}–{high}"


def _words(model: type[BaseModel], problem: dict[str, Any]) -> str:
    """One problem of a body or query string, in the API's words."""
    name = ".".join(str(part) for part in problem["loc"]) or "body"
    kind, given = problem["type"], problem.get("input")
    if kind == "missing":
        return getattr(model, "missing", {}).get(name, f"{name} is required")
    if kind == "invalid_value":
        return problem["msg"]
    if kind == "extra_forbidden":
        return f"unknown query parameter {name!r}; allowed: {', '.join(model.model_fields)}"
    if kind in ("greater_than_equal", "less_than_equal"):
        return f"{name}={given} is out of range; allowed: {_range(model, name)}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"{name} must be a whole number, got {given!r}"
    if kind == "literal_error":
        expected = problem["ctx"]["expected"].replace("'", "").replace(" or ", ", ")
        return f"{name} must be one of {expected}, got {given!r}"
    if kind == "string_too_short":
        return f"{name} is required"
    return f"{name}: {problem['msg']}, got {given!r}"


def _invalid(model: type[BaseModel], exc: ValidationError) -> BadRequest:
    """A body or query string outside its schema, as the API's 400: the first problem in
    words, all of them in details."""
    problems = exc.errors(include_url=False)
    message = _words(model, problems[0])
    return BadRequest(
        message,
        details={
            "errors": [
                {"field": ".".join(map(str, p["loc"])), "message": _words(model, p)}
                for p in problems
            ]
        },
    )


def validated(model: type[schemas.Body], data: dict[str, Any]) -> dict[str, Any]:
    try:
        checked = model.model_validate(data)
    except ValidationError as exc:
        raise _invalid(model, exc) from None
    # Only what was sent, as the schema coerced it ("yes" is True): the views and the
    # recorded params tell "not given" from a default.
    # warnings=False: a body may keep a value as sent for its owner's check (webhooks).
    return checked.model_dump(exclude_unset=True, warnings=False)


def query_of[T: BaseModel](model: type[T], request: HttpRequest) -> T:
    """The query string, checked against the route's declared schema (400 in words)."""
    try:
        return model.model_validate({name: request.GET.get(name) for name in request.GET})
    except ValidationError as exc:
        raise _invalid(model, exc) from None


def api_view(
    *,
    body: type[schemas.Body] | None = None,
    form: type[schemas.Body] | None = None,
    fields: Iterable[str] | None = None,
    query: type[BaseModel] | dict[str, type[BaseModel]] | None = None,
    answers: dict[str, dict[int, Any]] | None = None,
    summary: str | dict[str, str] = "",
    **roles: Role,
) -> Callable:
    """Authenticate, authorise by HTTP method (GET=Role.VIEWER, POST=...), read and check
    the body against its schema, render errors; and declare the contract the OpenAPI
    document is generated from (api/contract.py).

    `body` is the JSON body's schema of the mutating method (`form` a multipart one's): a
    field it does not declare is refused (400 unknown_field; `fields` overrides the list),
    a value of the wrong type gets a 400 with the field's rule, before the view runs.
    `answers` maps each method to its {status: schema}. The view finds the caller in
    request.actor and the checked JSON body in request.input.
    """
    allowed = {method.upper(): role for method, role in roles.items()}
    model = body or form
    if fields is None:
        fields = tuple(model.model_fields) if model is not None else ()
    fields = tuple(fields)
    form_view = form is not None
    if undeclared := sorted(set(allowed) - set(answers or {})):
        # Every answer is in the generated document: a route cannot forget to say its shape.
        raise TypeError(f"api_view: declare the answers of {', '.join(undeclared)}")
    contract = {
        method: Route(
            method=method,
            role=str(role),
            answers=answers[method],
            body=model if method != "GET" else None,
            form=form_view,
            query=(query.get(method) if isinstance(query, dict) else query)
            if method == "GET"
            else None,
            summary=summary.get(method, "") if isinstance(summary, dict) else summary,
        )
        for method, role in allowed.items()
    }

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            try:
                user, role, dashboard_token = authenticate(request)
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
                source = _source(request, dashboard_token)
                key = request_hash = ""
                request.input = {}
                if request.method != "GET":
                    key = _idempotency_key(request)
                    data = _read_body(request, fields, form_view)
                    if body is not None:
                        request.input = validated(body, request.input)
                    if key:
                        files = _file_hashes(request) if form else {}
                        request_hash = bodies.fingerprint(
                            user.pk, request.method, request.path, data, files
                        )
                request.actor = Actor(
                    user=user,
                    role=role,
                    source=source,
                    idempotency_key=key,
                    request_hash=request_hash,
                )
                return view(request, *args, **kwargs)
            except ControlError as exc:
                return error_response(exc.status, exc.code, exc.message, exc.details)
            except RequestDataTooBig:
                return error_response(413, "too_large", "request body is too large")
            except (MultiPartParserError, TooManyFieldsSent, TooManyFilesSent) as exc:
                return error_response(400, "invalid_form", f"the form body is malformed: {exc}")

        wrapper.contract = contract
        return wrapper

    return decorate


def public_view(
    answer: Any, summary: str = ""
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """A read-only view open to anyone (the API's index and document): GET only, and any
    other method gets the API's JSON 405, not Django's CSRF page."""
    return lambda view: _public(view, Route("GET", None, {200: answer}, summary=summary))


def _public(view: Callable[..., HttpResponse], route: Route) -> Callable[..., HttpResponse]:
    @csrf_exempt
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            response = error_response(
                405, "method_not_allowed", f"{request.method} is not allowed here; use GET"
            )
            response["Allow"] = "GET"
            return response
        return view(request, *args, **kwargs)

    wrapper.contract = {"GET": route}
    return wrapper
