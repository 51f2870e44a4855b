"""Celery tasks of the dashboard: thin wrappers, the work lives in web.actions."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from dashboard.web.actions import ActionFailed, submit


# A refusal (ActionFailed: the API said no, or could not be reached) is an expected
# outcome that the progress panel shows; `throws` makes Celery log it as one line, not
# as an unexpected error with a traceback.
@shared_task(name="web.submit_action", throws=(ActionFailed,))
def submit_action(action: str, app: str, params: dict[str, Any], token: str, key: str) -> str:
    """Apply one confirmed dashboard action through the control API; return the operation id.

    The task id is the idempotency key (the view sets it), so the progress panel finds
    this task's state and failure message before the operation exists.
    """
    return submit(action, app, params, token, key)
