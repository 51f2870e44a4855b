"""The action panel's poll: one submitted action's operation and its steps, in one query.

Every open panel polls once a second while its action runs, so this is the dashboard's
most frequent request. Built with the ORM, the operation and its steps cost two queries
whose compilation and model building took about 2 ms of CPU per poll on a 2-core
machine, most of the poll's server time; this one hand-written, indexed query takes a
fraction of that (BENCHMARKS.md). It reads only what the panel shows.

An action is found by its requester's own unguessable idempotency key (or, once the
Celery task has reported it, by the operation id it returned), never by the app in the
URL, which is only the page the panel lives on. Until a worker picks the task up, Celery
says PENDING for it and for a key nobody ever submitted alike, so each submission is
also remembered (`remember`, `submitted_title`): a made-up or expired key ends its panel's
polling instead of showing "Queued" for ever, and a refused one still says what it was.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from functools import cache

from django.conf import settings
from django.core.cache import cache as shared_cache
from django.db import connection
from django.utils import timezone

from dashboard.controlplane.models import Operation, OperationStep

_COLUMNS = (
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


@cache  # Built once per lookup column, not on every poll.
def _sql(lookup_column: str) -> str:
    q = connection.ops.quote_name
    return (
        f"SELECT {', '.join('o.' + q(c) for c in _COLUMNS)}, s.{q('at')}, s.{q('message')}"
        f" FROM {q(Operation._meta.db_table)} o"
        f" LEFT JOIN {q(OperationStep._meta.db_table)} s ON s.{q('operation_id')} = o.{q('id')}"
        f" WHERE o.{q('requester_id')} = %s AND o.{q(lookup_column)} = %s"
        f" ORDER BY s.{q('at')}, s.{q('id')}"
    )


def _aware(value: datetime | None) -> datetime | None:
    # PostgreSQL gives aware datetimes; SQLite (the default install) gives naive UTC ones.
    if value is not None and timezone.is_naive(value):
        return value.replace(tzinfo=UTC)
    return value


def _uuid(value: object) -> uuid.UUID | None:
    # PostgreSQL gives UUIDs; SQLite gives their 32 hex digits.
    return value if value is None or isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _json(value: object) -> object:
    # PostgreSQL's driver decodes jsonb; SQLite gives the text.
    return json.loads(value) if isinstance(value, str) else value


def find_operation(
    requester_id: int, *, key: str | None = None, pk: object = None
) -> tuple[Operation | None, list[tuple[datetime, str]]]:
    """The operation `requester_id` submitted with idempotency `key` (or with id `pk`),
    with only the fields the panel shows, and its steps as (at, message) pairs."""
    if key is not None:
        column, value = "idempotency_key", key
    else:
        column, value = "id", Operation._meta.pk.get_db_prep_value(_uuid(pk), connection)
    with connection.cursor() as cursor:
        cursor.execute(_sql(column), [requester_id, value])
        rows = cursor.fetchall()
    if not rows:
        return None, []
    fields = dict(zip(_COLUMNS, rows[0][: len(_COLUMNS)], strict=True))
    fields["id"], fields["revision_id"] = _uuid(fields["id"]), _uuid(fields["revision_id"])
    fields["finished_at"], fields["params"] = _aware(fields["finished_at"]), _json(fields["params"])
    fields["created_at"] = _aware(fields["created_at"])
    fields["cancel_requested_at"] = _aware(fields["cancel_requested_at"])
    op = Operation(**fields)
    steps = [(_aware(at), message) for *_, at, message in rows if at is not None]
    return op, steps


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
