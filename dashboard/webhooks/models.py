"""Webhook endpoints that admins register, and the deliveries sent to them.

The events are one enum, EventType, made from the operation kinds and the states an
operation can end in: a new kind (cancel, hold release) or a new final state (cancelled)
added to the control plane's enums becomes an event here without a change to this app.
"""

from __future__ import annotations

import secrets
import uuid

from django.conf import settings as conf
from django.db import models
from django.utils import timezone

from dashboard.controlplane.models import App, Operation, OperationKind, OperationState

# Every state an operation can end in: all but the two it passes through.
FINAL_STATES = [
    s for s in OperationState if s not in (OperationState.QUEUED, OperationState.RUNNING)
]
TEST_EVENT = "test"


def event_name(kind: str, state: str) -> str:
    """`set_rev.succeeded`: the event an operation of this kind sends when it ends so."""
    return f"{kind}.{state}"


EventType = models.TextChoices(
    "EventType",
    [
        (
            f"{kind.name}_{state.name}",
            (event_name(kind.value, state.value), f"{kind.label} {state.label.lower()}"),
        )
        for kind in OperationKind
        for state in FINAL_STATES
    ]
    + [("TEST", (TEST_EVENT, "test event (sent by 'Send test event')"))],
)


class PayloadFormat(models.TextChoices):
    JSON = "json", "JSON (signed event object)"
    SLACK = "slack", 'Slack-compatible ({"text": ...})'


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RETRYING = "retrying", "Retrying"
    SUCCEEDED = "succeeded", "Delivered"
    FAILED = "failed", "Failed"


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


class Endpoint(models.Model):
    """A URL that receives signed deliveries of the chosen events, for one app or all.

    The secret is kept as is (not hashed) because every delivery is signed with it; the
    API and the dashboard show it once, when the endpoint is created.
    """

    url = models.URLField(max_length=2000)
    app = models.ForeignKey(
        App, null=True, blank=True, on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    # Event names (EventType values); empty means every event.
    events = models.JSONField(default=list, blank=True)
    format = models.CharField(
        max_length=8, choices=PayloadFormat.choices, default=PayloadFormat.JSON
    )
    description = models.CharField(max_length=200, blank=True)
    secret = models.CharField(max_length=100, default=new_secret, editable=False)
    created_by = models.ForeignKey(
        conf.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    # The creating request's Idempotency-Key and what it is bound to (api.body.fingerprint):
    # a retried POST (the CLI's client retries with the same key) replays this endpoint
    # instead of registering a second one that would receive every event twice.
    idempotency_key = models.CharField(max_length=200, blank=True, editable=False)
    request_hash = models.CharField(max_length=64, blank=True, editable=False)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["created_by", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="unique_webhook_idempotency_key_per_user",
            )
        ]

    def __str__(self) -> str:
        return f"{self.url} ({self.app.name if self.app_id else 'all apps'})"

    def wants(self, event: str) -> bool:
        return event == TEST_EVENT or not self.events or event in self.events

    @property
    def secret_hint(self) -> str:
        return self.secret[:10] + "…"


class Delivery(models.Model):
    """One event sent (or being sent) to one endpoint, with what its receiver answered.

    The body is stored as sent, so every retry sends the same bytes under a fresh
    timestamped signature.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="deliveries")
    # No `choices`: EventType grows with the control plane's enums, and choices would make
    # each new operation kind a migration of this app.
    event = models.CharField(max_length=64)
    operation = models.ForeignKey(
        Operation, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    body = models.TextField()
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    response_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    # When the next attempt is due. While one is being made it is pushed past that
    # attempt's timeout, which keeps a second copy of the task from sending it twice.
    next_attempt_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["endpoint", "-created_at"], name="delivery_endpoint_newest"),
            models.Index(fields=["status", "next_attempt_at"], name="delivery_due"),
        ]

    def __str__(self) -> str:
        return f"{self.event} → {self.endpoint_id} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in (DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED)
