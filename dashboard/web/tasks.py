"""Celery tasks of the dashboard: thin wrappers, the work lives in web.actions."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from dashboard.web.actions import submit


@shared_task(name="web.submit_action")
def submit_action(action: str, app: str, params: dict[str, Any], token: str, key: str) -> str:
    """Apply one confirmed dashboard action through the control API; return the operation id.

    The task id is the idempotency key (the view sets it), so the progress panel finds
    this task's state and failure message before the operation exists.
    """
    return submit(action, app, params, token, key)
