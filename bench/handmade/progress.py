"""The action panel's progress query as it was, in one hand-written SQL query with
adapters for each database driver; kept only for bench/run.py --only speedups."""

from __future__ import annotations

import json
import uuid
from collections import namedtuple
from datetime import UTC, datetime
from functools import cache

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


# What the panel's template reads of a step (the ORM's OperationStep has the same names).
Step = namedtuple("Step", "at message")


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
    steps = [Step(_aware(at), message) for *_, at, message in rows if at is not None]
    return op, steps


# What did not change: the submission records, from the code's own module.
from dashboard.web.progress import remember, submitted, submitted_title  # noqa: E402

__all__ = ["find_operation", "remember", "submitted", "submitted_title"]
