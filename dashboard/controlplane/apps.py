from __future__ import annotations

from django.apps import AppConfig


class ControlPlaneConfig(AppConfig):
    name = "dashboard.controlplane"
    label = "controlplane"
    verbose_name = "Control plane"
