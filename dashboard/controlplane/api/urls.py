from __future__ import annotations

from django.urls import path, re_path

from dashboard.controlplane.api import errors, views

urlpatterns = [
    path("", views.index, name="api-index"),
    path("openapi.json", views.openapi, name="api-openapi"),
    path("me", views.me, name="api-me"),
    path("apps", views.apps, name="api-apps"),
    path("apps/<str:app>", views.app_detail, name="api-app"),
    path("apps/<str:app>/revisions", views.revisions, name="api-revisions"),
    path("apps/<str:app>/revisions/preview", views.deploy_preview, name="api-deploy-preview"),
    path("apps/<str:app>/revisions/<str:rev>", views.revision_detail, name="api-revision"),
    path("apps/<str:app>/revisions/<str:rev>/pin", views.pin, name="api-pin"),
    path("apps/<str:app>/revisions/<str:rev>/unpin", views.unpin, name="api-unpin"),
    path("apps/<str:app>/retention", views.retention_settings, name="api-retention"),
    path("apps/<str:app>/set-rev", views.set_rev, name="api-set-rev"),
    path("apps/<str:app>/rollout", views.rollout, name="api-rollout"),
    path("apps/<str:app>/scale", views.scale, name="api-scale"),
    path("apps/<str:app>/suspend", views.suspend, name="api-suspend"),
    path("apps/<str:app>/resume", views.resume, name="api-resume"),
    path("apps/<str:app>/runners", views.app_runners, name="api-runners"),
    path("apps/<str:app>/health", views.app_health, name="api-health"),
    path("apps/<str:app>/logs", views.app_logs, name="api-logs"),
    path("apps/<str:app>/diff", views.app_diff, name="api-diff"),
    path("apps/<str:app>/operations", views.app_operations, name="api-history"),
    path(
        "apps/<str:app>/operations/<str:operation_id>/cancel",
        views.cancel_operation,
        name="api-cancel",
    ),
    path("apps/<str:app>/release", views.release, name="api-release"),
    path("apps/<str:app>/hold-policy", views.hold_policy, name="api-hold-policy"),
    path("apps/<str:app>/network", views.network, name="api-network"),
    path("runners/<str:runner_id>/stop", views.runner_stop, name="api-runner-stop"),
    path("runners/<str:runner_id>/kill", views.runner_kill, name="api-runner-kill"),
    path("operations/<str:operation_id>", views.operation_detail, name="api-operation"),
    # Anything else under /api/v1/ answers in the API's JSON error shape, not Django's HTML.
    re_path(r"\A(?P<path>[\s\S]*)\Z", errors.not_found),
]
