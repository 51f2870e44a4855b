from __future__ import annotations

from django.apps import AppConfig


class ControlPlaneConfig(AppConfig):
    name = "dashboard.controlplane"
    label = "controlplane"
    verbose_name = "Control plane"

    def ready(self) -> None:
        # Make Switchboard's Celery app the current one in every Django process (gunicorn,
        # tests, management commands): @shared_task senders would otherwise bind to
        # Celery's default app and broker (amqp://localhost) and never reach the worker.
        from dashboard import celery  # noqa: F401
