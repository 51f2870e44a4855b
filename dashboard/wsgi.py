from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
application = get_wsgi_application()

# Make Switchboard's Celery app the current one in the web process: @shared_task senders
# (operations.submit) otherwise bind to Celery's default app and its default broker
# (amqp://localhost), and queued operations never reach the worker.
from dashboard.celery import app as celery_app  # noqa: E402

__all__ = ["application", "celery_app"]
