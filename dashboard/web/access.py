"""Who may do what, and how a URL's app / revision / runner reference becomes a row.

Every lookup here raises BadInput with a precise, user-facing message rather than
letting a bad reference reach the control API: the dashboard refuses it before anything
is enqueued, so nothing is half-done.
"""

from __future__ import annotations

import re
import uuid

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from dashboard.controlplane.models import App, Revision, Role, role_of
from dashboard.controlplane.rules import role_allows

HEX_PREFIX_RE = re.compile(r"\A[0-9a-f]{8,32}\Z")
# What the pages show of an app besides its name: Current, Previous, who made Current
# what it is (the operation) and the hold a rollback set.
APP_RELATED = ("current_revision", "previous_revision", "current_operation", "held_operation")


class BadInput(Exception):
    """A reference or value the user sent is wrong; `status` is the HTTP answer."""

    def __init__(self, message: str, status: int = 400):
        self.message = message
        self.status = status
        super().__init__(message)


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


def prefix_range(hex_prefix: str) -> tuple[uuid.UUID, uuid.UUID]:
    """The UUIDs starting with `hex_prefix` (lower-case hex, no dashes), as a range: this
    works on every database and uses the primary key index, unlike a string match on a
    cast UUID."""
    return uuid.UUID(hex_prefix.ljust(32, "0")), uuid.UUID(hex_prefix.ljust(32, "f"))


def find_revision(app: App, ref: str) -> Revision:
    """A revision of `app` by full id or a unique prefix of 8+ hex characters."""
    normal = (ref or "").strip().lower().replace("-", "")
    if not HEX_PREFIX_RE.match(normal):
        raise BadInput(
            f"{ref!r} is not a revision id: give the id or a prefix of at least 8 hex characters."
        )
    low, high = prefix_range(normal)
    matches = list(Revision.objects.filter(id__gte=low, id__lte=high).select_related("app")[:3])
    own = [r for r in matches if r.app_id == app.pk]
    if len(own) == 1:
        return own[0]
    if len(own) > 1:
        raise BadInput(f"Revision prefix {ref!r} is ambiguous in {app.name}: give more characters.")
    if matches:
        raise BadInput(
            f"Revision {matches[0].short_id} belongs to app {matches[0].app.name!r}, not {app.name!r}."
        )
    raise BadInput(f"App {app.name!r} has no revision {ref!r}.", status=404)
