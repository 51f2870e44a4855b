from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from dashboard.web import views

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", views.apps, name="apps"),
    path("apps/<slug:app>/", views.app_home, name="app"),
    path("apps/<slug:app>/versions", views.versions, name="versions"),
    path("apps/<slug:app>/runners", views.runners, name="runners"),
    path("apps/<slug:app>/history", views.history, name="history"),
    path("apps/<slug:app>/confirm/<slug:action>", views.confirm, name="confirm"),
    path("apps/<slug:app>/actions/<str:key>", views.action_progress, name="action-progress"),
]
