"""Celery reads only CELERY_-prefixed settings; a misspelt one is silently ignored, so
these prove the ones the operations engine relies on are really in effect."""

from __future__ import annotations

from django.conf import settings

from dashboard.celery import app
from dashboard.controlplane import tasks


def test_tasks_are_acknowledged_only_after_they_finish():
    assert app.conf.task_acks_late is True


def test_a_task_whose_worker_died_is_requeued():
    assert app.conf.task_reject_on_worker_lost is True


def test_a_worker_takes_one_task_at_a_time():
    assert app.conf.worker_prefetch_multiplier == 1


def test_tasks_have_soft_and_hard_time_limits():
    assert app.conf.task_soft_time_limit == settings.CELERY_TASK_SOFT_TIME_LIMIT
    assert app.conf.task_time_limit > app.conf.task_soft_time_limit > 0


def test_the_sweeper_is_on_the_beat_schedule():
    schedule = app.conf.beat_schedule["sweep-operations"]
    assert schedule["task"] == "controlplane.sweep_operations"


def test_the_broker_is_redis():
    assert app.conf.broker_url == settings.CELERY_BROKER_URL
    assert app.conf.broker_url.startswith("redis://")


def test_retention_runs_periodically_from_the_beat_schedule():
    schedule = app.conf.beat_schedule["sweep-retention"]
    assert schedule["task"] == "controlplane.sweep_retention"
    assert app.tasks["controlplane.sweep_retention"].run is tasks.sweep_retention.run
    assert app.tasks["controlplane.apply_retention"].run is tasks.apply_retention.run
