"""What an event says, and turning an ended operation into deliveries.

`operation_finished` is called once the transaction that ended an operation committed
(operations._finish registers it with transaction.on_commit), so a receiver never hears
of a state the database could still roll back, and the operation never waits for it.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from dashboard.controlplane.api.serializers import operation_json
from dashboard.controlplane.models import App, Operation, OperationKind, Revision, short_id
from dashboard.webhooks.delivery import enqueue
from dashboard.webhooks.models import (
    TEST_EVENT,
    Delivery,
    Endpoint,
    EventType,
    PayloadFormat,
    event_name,
)

log = logging.getLogger(__name__)


def _direction(op: Operation) -> str | None:
    """For a set-rev: `rollback` to an older revision, `roll_forward` to a newer one."""
    if op.kind != OperationKind.SET_REV:
        return None
    ids = [op.params.get("from_revision"), op.params.get("revision")]
    if not all(ids):
        return "roll_forward"
    created = dict(Revision.objects.filter(pk__in=ids).values_list("id", "created_at"))
    before, after = (created.get(uuid.UUID(str(i))) for i in ids)
    if before and after and after < before:
        return "rollback"
    return "roll_forward"


def _history_url(app: str) -> str:
    return settings.SWITCHBOARD_API_URL.rstrip("/") + reverse("history", args=[app])


def _summary(op: Operation, direction: str | None) -> str:
    """One line a person reads in a chat channel."""
    what = op.get_kind_display()
    if direction:
        what = "rollback (set-rev)" if direction == "rollback" else "roll forward (set-rev)"
    target = ""
    if op.params.get("from_revision") and op.params.get("revision"):
        target = (
            f" from {short_id(uuid.UUID(str(op.params['from_revision'])))}"
            f" to {short_id(uuid.UUID(str(op.params['revision'])))}"
        )
    elif op.subject:
        noun = (
            "runner"
            if op.kind in (OperationKind.RUNNER_STOP, OperationKind.RUNNER_KILL)
            else "revision"
        )
        target = f" ({noun} {op.subject})"
    line = f"{what} of {op.app.name}{target} {op.get_state_display().lower()}"
    line += f", by {op.requester_name or 'unknown'} ({op.source})"
    if op.reason:
        line += f": “{op.reason}”"
    if op.error.strip():
        line += f" — {op.error.strip().splitlines()[0][:300]}"
    return line


def operation_payload(op: Operation) -> dict[str, Any]:
    direction = _direction(op)
    return {
        "event": event_name(op.kind, op.state),
        "created_at": timezone.now().isoformat(),
        "app": op.app.name,
        "text": _summary(op, direction),
        "direction": direction,
        "operation": operation_json(op, steps=False),
        "history_url": _history_url(op.app.name),
    }


def test_payload(endpoint: Endpoint, requester: str) -> dict[str, Any]:
    scope = endpoint.app.name if endpoint.app_id else "all apps"
    return {
        "event": TEST_EVENT,
        "created_at": timezone.now().isoformat(),
        "app": endpoint.app.name if endpoint.app_id else None,
        "text": f"Test event from Switchboard for webhook {endpoint.id} ({scope}), "
        f"sent by {requester}",
        "direction": None,
        "operation": None,
        "history_url": None,
    }


def render_body(endpoint: Endpoint, payload: dict[str, Any], delivery_id: str) -> str:
    """The body as sent: the event object, or Slack's {"text": ...}."""
    if endpoint.format == PayloadFormat.SLACK:
        text = payload["text"]
        if payload.get("history_url"):
            text += f" <{payload['history_url']}|History>"
        return json.dumps({"text": text})
    return json.dumps({"id": delivery_id, **payload}, separators=(",", ":"))


def create_delivery(
    endpoint: Endpoint, payload: dict[str, Any], operation: Operation | None = None
) -> Delivery:
    delivery = Delivery(endpoint=endpoint, event=payload["event"], operation=operation)
    delivery.body = render_body(endpoint, payload, str(delivery.id))
    delivery.save()
    return delivery


def endpoints_for(app: App, event: str) -> list[Endpoint]:
    candidates = Endpoint.objects.filter(Q(app__isnull=True) | Q(app=app))
    return [e for e in candidates if e.wants(event)]


def operation_finished(operation_id: Any) -> None:
    """Queue a delivery of the operation's end to every endpoint that wants it.

    Never raises: a fault here is logged and leaves the operation as it ended.
    """
    try:
        op = Operation.objects.select_related("app").filter(pk=operation_id).first()
        if op is None or not op.is_finished:
            return
        event = event_name(op.kind, op.state)
        if event not in EventType.values:
            return
        endpoints = endpoints_for(op.app, event)
        if not endpoints:
            return
        payload = operation_payload(op)
        for endpoint in endpoints:
            enqueue(create_delivery(endpoint, payload, op))
    except Exception:
        log.exception("could not queue webhook deliveries for operation %s", operation_id)
