"""/api/v1/webhooks... (included from dashboard/urls.py ahead of the control API's catch-all)."""

from __future__ import annotations

from django.urls import path

from dashboard.webhooks import api

urlpatterns = [
    path("webhooks", api.webhooks, name="api-webhooks"),
    path("webhooks/<str:webhook_id>", api.webhook_detail, name="api-webhook"),
    path("webhooks/<str:webhook_id>/deliveries", api.deliveries, name="api-webhook-deliveries"),
    path("webhooks/<str:webhook_id>/test", api.test, name="api-webhook-test"),
]
