"""The Webhooks pages, under /webhooks/ (included from dashboard/urls.py)."""

from __future__ import annotations

from django.urls import path

from dashboard.webhooks import views

urlpatterns = [
    path("", views.webhooks, name="webhooks"),
    path("<int:webhook_id>/", views.webhook, name="webhook"),
    path("<int:webhook_id>/test", views.send_test, name="webhook-test"),
    path("<int:webhook_id>/delete", views.delete, name="webhook-delete"),
]
