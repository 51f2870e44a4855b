from __future__ import annotations

from django.contrib import admin
from django.urls import include, path, re_path

from dashboard.controlplane.api import errors

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("dashboard.webhooks.urls")),
    path("api/v1/", include("dashboard.controlplane.api.urls")),
    # Anything else under /api/ (another version, a typo) is the API's JSON 404 too.
    re_path(r"\Aapi(?:/(?P<path>[\s\S]*))?\Z", errors.not_found),
    path("webhooks/", include("dashboard.webhooks.web_urls")),
    path("", include("dashboard.web.urls")),
]
