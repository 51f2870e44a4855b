from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import path
from django.views.generic import RedirectView

from dashboard.web import live, views


class FaviconView(RedirectView):
    """Browsers ask for /favicon.ico on pages without an icon link (the admin's): send them
    to the static SVG instead of a 404, which Chromium logs as a console error."""

    def get_redirect_url(self, *args, **kwargs) -> str:
        # Resolved per request: static() may need the storage's manifest (hashed names).
        return static("favicon.svg")


urlpatterns = [
    path("favicon.ico", FaviconView.as_view(), name="favicon"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", views.apps, name="apps"),
    path("apps/<slug:app>/", views.app_home, name="app"),
    path("apps/<slug:app>/versions", views.versions, name="versions"),
    path("apps/<slug:app>/events", live.app_events, name="app-events"),
    path("apps/<slug:app>/compare/", views.compare, name="compare"),
    path("apps/<slug:app>/runners", views.runners, name="runners"),
    path("apps/<slug:app>/history", views.history, name="history"),
    path("apps/<slug:app>/confirm/<slug:action>", views.confirm, name="confirm"),
    path("apps/<slug:app>/actions/<str:key>", views.action_progress, name="action-progress"),
    path("apps/<slug:app>/actions/<str:key>/cancel", views.action_cancel, name="action-cancel"),
]
