"""Who may do what, and how a URL's app reference becomes a row (a revision reference is
resolved by the control plane's one resolver, controlplane.revisions.resolve).

Every lookup here raises BadInput with a precise, user-facing message rather than
letting a bad reference reach the control API: the dashboard refuses it before anything
is enqueued, so nothing is half-done.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from dashboard.controlplane.errors import ControlError
from dashboard.controlplane.models import App, Role, role_of
from dashboard.controlplane.rules import role_allows

# What the pages show of an app besides its name: Current, Previous, who made Current
# what it is (the operation) and the hold a rollback set.
APP_RELATED = ("current_revision", "previous_revision", "current_operation", "held_operation")


class BadInput(ControlError):
    """A reference or value the user sent is wrong; `status` is the HTTP answer. A
    ControlError, so the pages answer the control plane's own refusals (a revision
    reference, a refused action) and the dashboard's alike."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message, status=status)


def require_role(request: HttpRequest, needed: Role) -> Role:
    """The user's role, or PermissionDenied (403) if it is below `needed`."""
    role = role_of(request.user)
    if not role_allows(role, needed):
        held = role.label if role else "no role"
        raise PermissionDenied(f"This needs the {needed.label} role; you have {held}.")
    return role


def get_app(name: str) -> App:
    app = App.objects.select_related(*APP_RELATED).filter(name=name).first()
    if app is None:
        raise BadInput(f"There is no app named {name!r}.", status=404)
    return app
