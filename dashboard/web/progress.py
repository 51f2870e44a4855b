"""The action panel's poll: one submitted action's operation and its steps.

An action is found by its requester's own unguessable idempotency key (or, once the
Celery task has reported it, by the operation id it returned), never by the app in the
URL, which is only the page the panel lives on. Until a worker picks the task up, Celery
says PENDING for it and for a key nobody ever submitted alike, so each submission is
also remembered (`remember`, `submitted_title`): a made-up or expired key ends its panel's
polling instead of showing "Queued" for ever, and a refused one still says what it was.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.conf import settings
from django.core.cache import cache as shared_cache
from django.utils import timezone

from dashboard.controlplane.models import Operation, OperationStep

# Only what the panel shows (the operation's title, state and cancel button).
_FIELDS = (
    "id",
    "kind",
    "state",
    "error",
    "revision_id",
    "params",
    "finished_at",
    "created_at",
    "cancel_requested_at",
    "cancel_reason",
    "app_id",
)


def find_operation(
    requester_id: int, *, key: str | None = None, pk: object = None
) -> tuple[Operation | None, list[OperationStep]]:
    """The operation `requester_id` submitted with idempotency `key` (or with id `pk`),
    with only the fields the panel shows, and its steps in order."""
    lookup = {"idempotency_key": key} if key is not None else {"pk": pk}
    # A running operation has steps: it comes with them, in one query. Only one that has
    # none yet (queued) or that does not exist takes a second.
    steps = list(
        OperationStep.objects.filter(
            **{f"operation__{name}": value for name, value in lookup.items()},
            operation__requester_id=requester_id,
        )
        .select_related("operation")
        .only("at", "message", *(f"operation__{name}" for name in _FIELDS))
    )
    if steps:
        return steps[0].operation, steps
    op = Operation.objects.filter(requester_id=requester_id, **lookup).only(*_FIELDS).first()
    return op, []


def _submitted_key(key: str) -> str:
    return f"action-submitted:{key}"


def remember(key: str, user_id: int, title: str, cli: str = "") -> None:
    """Record that `user_id` submitted the action `key` (titled e.g. "Roll back 3f2a9c1e"),
    when, and the CLI command doing the same (`cli`), for as long as Celery keeps its
    result. Raises Redis's errors: with Redis down the action cannot be queued either."""
    value = (user_id, title, timezone.now().timestamp(), cli)
    shared_cache.set(_submitted_key(key), value, settings.CELERY_RESULT_EXPIRES)


def submitted(key: str, user_id: int) -> tuple[str, datetime | None, str] | None:
    """(title, when, CLI equivalent) of the action `user_id` submitted with `key`, or None
    if they did not."""
    value = shared_cache.get(_submitted_key(key))
    if not value or value[0] != user_id:
        return None
    at = datetime.fromtimestamp(value[2], tz=UTC) if len(value) > 2 else None
    return value[1], at, value[3] if len(value) > 3 else ""


def submitted_title(key: str, user_id: int) -> str | None:
    """The title of the action `user_id` submitted with `key`, or None if they did not."""
    found = submitted(key, user_id)
    return found[0] if found else None
