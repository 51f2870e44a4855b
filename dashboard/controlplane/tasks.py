"""Celery tasks of the control plane: thin wrappers, the work is in executors/operations."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from dashboard.controlplane import bundles, executors, operations, retention


@shared_task(name="controlplane.execute_operation")
def execute_operation(operation_id: str) -> str | None:
    op = executors.execute(operation_id)
    return op.state if op else None


@shared_task(name="controlplane.sweep_operations")
def sweep_operations() -> dict[str, int]:
    return operations.sweep()


@shared_task(name="controlplane.apply_retention")
def apply_retention(app_id: int) -> dict:
    return retention.apply(app_id)


@shared_task(name="controlplane.sweep_retention")
def sweep_retention() -> int:
    return retention.sweep()


@shared_task(name="controlplane.sweep_incoming")
def sweep_incoming() -> int:
    return bundles.sweep_incoming(settings.INCOMING_MAX_AGE)
