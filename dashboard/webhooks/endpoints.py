"""Registering, removing and testing webhook endpoints, and their JSON shapes.

The API views and the dashboard's forms both call these functions, so an endpoint is
checked by one set of rules and refused in the same words wherever it comes from.
"""

from __future__ import annotations

import re
import string
from typing import Any
from urllib.parse import urlsplit

from django.db import IntegrityError, transaction

from dashboard.controlplane.errors import BadRequest, ControlError, NotFound
from dashboard.controlplane.revisions import get_app
from dashboard.webhooks import events
from dashboard.webhooks.delivery import enqueue
from dashboard.webhooks.models import (
    TEST_EVENT,
    Delivery,
    Endpoint,
    EventType,
    PayloadFormat,
)

MAX_URL = 2000
MAX_DESCRIPTION = 200
# What a subscription may name: every event but the test event, which is always sent.
SUBSCRIBABLE = [e for e in EventType.values if e != TEST_EVENT]
ID_RE = re.compile(r"\A[0-9]{1,18}\Z")
CREATE_FIELDS = ("url", "app", "events", "format", "description")


def check_url(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRequest("url is required: the http:// or https:// address to deliver to")
    url = value.strip()
    if len(url) > MAX_URL:
        raise BadRequest(f"url is {len(url)} characters long; the most allowed is {MAX_URL}")
    if any(c in string.whitespace or ord(c) < 32 or ord(c) == 127 for c in url):
        raise BadRequest("url must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is the check: "host:x" raises here.
    except ValueError as exc:
        raise BadRequest(f"url {url!r} is not a valid address: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise BadRequest(f"url must start with http:// or https://, got {url!r}")
    if not parts.hostname:
        raise BadRequest(f"url {url!r} has no host")
    return url


def check_events(value: Any) -> list[str]:
    if value is None or value == []:
        return []
    if not isinstance(value, list) or not all(isinstance(e, str) for e in value):
        raise BadRequest("events must be a list of event names (an empty list means all)")
    unknown = sorted({e for e in value if e not in SUBSCRIBABLE})
    if unknown:
        raise BadRequest(
            f"unknown event{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(SUBSCRIBABLE)}",
            details={"unknown": unknown, "allowed": SUBSCRIBABLE},
            code="unknown_event",
        )
    return [e for e in SUBSCRIBABLE if e in value]  # In the enum's order, once each.


def check_format(value: Any) -> str:
    if value is None or value == "":
        return PayloadFormat.JSON
    if value not in PayloadFormat.values:
        raise BadRequest(f"format must be one of {', '.join(PayloadFormat.values)}, got {value!r}")
    return value


def check_description(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequest("description must be a string")
    if len(value) > MAX_DESCRIPTION:
        raise BadRequest(f"description is longer than {MAX_DESCRIPTION} characters")
    return value


def replay(user: Any, key: str, request_hash: str) -> Endpoint | None:
    """The endpoint this user already registered with this Idempotency-Key, if any; the
    key on a different request is refused, as the control API refuses it for operations."""
    if not key:
        return None
    earlier = Endpoint.objects.filter(created_by=user, idempotency_key=key).first()
    if earlier is not None and earlier.request_hash != request_hash:
        raise ControlError(
            f"Idempotency-Key {key!r} was already used for a different request (webhook "
            f"{earlier.id}); send a new key for a new request",
            details={"webhook": earlier.id},
            status=422,
            code="idempotency_key_reused",
        )
    return earlier


def create(
    user: Any,
    *,
    url: Any,
    app: Any = None,
    events_: Any = None,
    format: Any = None,
    description: Any = None,
    idempotency_key: str = "",
    request_hash: str = "",
) -> Endpoint:
    """Check every field (nothing is written unless all pass), then register the endpoint
    (or return the one a first try with the same Idempotency-Key registered)."""
    if earlier := replay(user, idempotency_key, request_hash):
        return earlier
    checked = {
        "url": check_url(url),
        "events": check_events(events_),
        "format": check_format(format),
        "description": check_description(description),
    }
    if app not in (None, ""):
        if not isinstance(app, str):
            raise BadRequest("app must be an app's name, or left out for every app")
        checked["app"] = get_app(app)
    try:
        with transaction.atomic():
            return Endpoint.objects.create(
                created_by=user,
                idempotency_key=idempotency_key,
                request_hash=request_hash if idempotency_key else "",
                **checked,
            )
    except IntegrityError:  # A concurrent try with the same key won.
        earlier = replay(user, idempotency_key, request_hash)
        if earlier is None:
            raise
        return earlier


def get(endpoint_id: Any) -> Endpoint:
    # Bounded, so a 30-digit id is this 400 and not the database's integer overflow.
    if not ID_RE.match(str(endpoint_id)):
        raise BadRequest(f"{endpoint_id!r} is not a webhook id (a whole number)")
    key = int(endpoint_id)
    found = Endpoint.objects.select_related("app", "created_by").filter(pk=key).first()
    if found is None:
        raise NotFound(f"no webhook {key}", details={"webhook": key})
    return found


def remove(endpoint: Endpoint) -> None:
    endpoint.delete()  # Its deliveries go with it; one still queued finds nothing to send.


def send_test(endpoint: Endpoint, requester: str) -> Delivery:
    """Queue a test event to this endpoint, whatever events it subscribes to."""
    try:
        with transaction.atomic():
            delivery = events.create_delivery(endpoint, events.test_payload(endpoint, requester))
    except IntegrityError:  # Removed meanwhile.
        raise NotFound(f"no webhook {endpoint.id}") from None
    enqueue(delivery)
    return delivery


def _at(value) -> str | None:
    return value.isoformat() if value else None


def endpoint_json(endpoint: Endpoint) -> dict[str, Any]:
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "app": endpoint.app.name if endpoint.app_id else None,
        "events": endpoint.events,
        "format": endpoint.format,
        "description": endpoint.description,
        "secret_hint": endpoint.secret_hint,
        "created_by": endpoint.created_by.get_username() if endpoint.created_by else None,
        "created_at": _at(endpoint.created_at),
    }


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": str(delivery.id),
        "webhook": delivery.endpoint_id,
        "event": delivery.event,
        "operation": str(delivery.operation_id) if delivery.operation_id else None,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "response_code": delivery.response_code,
        "error": delivery.error,
        "created_at": _at(delivery.created_at),
        "last_attempt_at": _at(delivery.last_attempt_at),
        "next_attempt_at": None if delivery.is_finished else _at(delivery.next_attempt_at),
        "finished_at": _at(delivery.finished_at),
    }
