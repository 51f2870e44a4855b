"""The Celery settings webhooks rely on are in effect (a misspelt one is silently ignored)."""

from __future__ import annotations

import pytest

from dashboard.celery import app


@pytest.fixture(autouse=True)
def tasks_discovered_as_a_worker_discovers_them():
    # autodiscover_tasks is lazy: a worker or beat imports each app's tasks at startup.
    app.loader.import_default_modules()


def test_the_delivery_sweeper_is_on_the_beat_schedule():
    schedule = app.conf.beat_schedule["sweep-webhook-deliveries"]
    assert schedule["task"] == "webhooks.sweep_deliveries"
    assert schedule["task"] in app.tasks


def test_the_delivery_task_is_registered_under_its_name_and_retries_without_a_celery_limit():
    task = app.tasks["webhooks.deliver"]
    # How many attempts a delivery gets is WEBHOOK_MAX_ATTEMPTS, counted on its row.
    assert task.max_retries is None
