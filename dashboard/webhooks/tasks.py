"""Celery tasks of the webhooks: thin wrappers, the work is in delivery.py."""

from __future__ import annotations

from celery import shared_task

from dashboard.webhooks import delivery


# max_retries=None: how many attempts a delivery gets is delivery.py's rule
# (WEBHOOK_MAX_ATTEMPTS, counted on the row), not Celery's.
@shared_task(name="webhooks.deliver", bind=True, max_retries=None)
def deliver(self, delivery_id: str) -> float | None:
    retry_in = delivery.attempt(delivery_id)
    if retry_in is not None:
        raise self.retry(countdown=retry_in)
    return retry_in


@shared_task(name="webhooks.sweep_deliveries")
def sweep_deliveries() -> int:
    return delivery.sweep()
