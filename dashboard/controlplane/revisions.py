"""Finding apps and revisions from what a user typed.

A revision reference is a full UUID or a unique prefix of at least 8 hex characters,
with or without dashes. Every way it can go wrong gets its own precise message.
"""

from __future__ import annotations

import uuid

from dashboard.controlplane.errors import BadRequest, NotFound
from dashboard.controlplane.models import App, Revision
from dashboard.controlplane.rules import HEX_RE, MIN_PREFIX, revision_ref

__all__ = ["MIN_PREFIX", "get_app", "id_range", "is_hex", "normalise", "resolve"]


def get_app(name: str, *, lock: bool = False) -> App:
    apps = App.objects.select_for_update() if lock else App.objects
    app = apps.filter(name=name).first()
    if app is None:
        raise NotFound(f"no app named {name!r}", details={"app": name})
    return app


def is_hex(text: str) -> bool:
    return bool(HEX_RE.match(text))


def id_range(prefix: str) -> tuple[uuid.UUID, uuid.UUID]:
    """The UUIDs starting with `prefix` (lower-case hex, no dashes, at most 32)."""
    # A hex prefix is a contiguous range of UUIDs, so the primary-key index answers it on
    # every database (PostgreSQL orders uuid bytewise, SQLite stores the hex string).
    pad = 32 - len(prefix)
    return uuid.UUID(prefix + "0" * pad), uuid.UUID(prefix + "f" * pad)


def normalise(ref: str) -> str:
    hex_ref, why = revision_ref(ref)
    if why is not None:
        raise BadRequest(why, details={"revision": ref})
    return hex_ref


def resolve(app: App, ref: str) -> Revision:
    """The revision of `app` that `ref` names, or a precise error."""
    hex_ref = normalise(ref)
    low, high = id_range(hex_ref)
    candidates = list(
        Revision.objects.filter(app=app, id__gte=low, id__lte=high)
        .select_related("app", "deployed_by")
        .order_by("-created_at")[:6]
    )
    if len(candidates) == 1:
        return candidates[0]
    if len(candidates) > 1:
        names = ", ".join(c.id.hex[: max(12, len(hex_ref) + 4)] for c in candidates[:5])
        raise BadRequest(
            f"revision prefix {ref!r} is ambiguous in app {app.name!r}: it matches "
            f"{names}{' and more' if len(candidates) > 5 else ''}; give more characters",
            details={"revision": ref, "candidates": [str(c.id) for c in candidates[:5]]},
            code="ambiguous_revision",
        )
    elsewhere = Revision.objects.filter(id__gte=low, id__lte=high).select_related("app").first()
    if elsewhere is not None:
        raise NotFound(
            f"revision {ref!r} belongs to app {elsewhere.app.name!r}, not {app.name!r}",
            details={"revision": ref, "app": elsewhere.app.name},
            code="revision_of_another_app",
        )
    raise NotFound(
        f"app {app.name!r} has no revision {ref!r}", details={"revision": ref, "app": app.name}
    )
