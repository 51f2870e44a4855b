"""The JSON shapes of the control API (dashboard/api_client.py relies on them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dashboard.controlplane import parameters
from dashboard.controlplane.models import App, Operation, Revision, short_id


def _at(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def revision_json(revision: Revision, app: App) -> dict[str, Any]:
    settings = revision.settings or {}
    return {
        "id": str(revision.id),
        "short_id": revision.short_id,
        "app": app.name,
        "status": revision.status,
        "current": app.current_revision_id == revision.id,
        "created_at": _at(revision.created_at),
        "deployed_at": _at(revision.deployed_at),
        "message": revision.message,
        "annotations": revision.annotations,
        "deployed_by": revision.deployed_by.get_username() if revision.deployed_by else None,
        "machine_type": settings.get("machine_type")
        or (revision.code_settings or {}).get("machine_type"),
        "settings": settings,
        "code_settings": revision.code_settings,
        "entrypoint": revision.entrypoint,
        "error": revision.error,
        "log_tail": revision.log_tail,
        "endpoints": revision.endpoints,
        "pinned": revision.pinned,
        "pinned_by": revision.pinned_by.get_username() if revision.pinned_by else None,
        "pinned_at": _at(revision.pinned_at),
    }


def operation_json(op: Operation, *, steps: bool = True) -> dict[str, Any]:
    duration = op.duration
    data = {
        "id": str(op.id),
        "app": op.app.name,
        "kind": op.kind,
        "state": op.state,
        "requester": op.requester_name,
        "source": op.source,
        "reason": op.reason,
        "params": op.params,
        "revision": str(op.revision_id) if op.revision_id else op.params.get("revision"),
        "created_at": _at(op.created_at),
        "started_at": _at(op.started_at),
        "finished_at": _at(op.finished_at),
        "duration_ms": round(duration.total_seconds() * 1000) if duration is not None else None,
        "error": op.error,
        "result": {k: v for k, v in op.result.items() if k != "enqueued_at"},
        # Who asked to cancel it (or which set-rev superseded it) and when; None if nobody.
        "cancel": {
            "requested_at": _at(op.cancel_requested_at),
            "reason": op.cancel_reason,
        }
        if op.cancel_requested_at
        else None,
    }
    if steps:
        data["steps"] = [{"at": _at(s.at), "message": s.message} for s in op.steps.all()]
    return data


def app_json(app: App, *, last_operation: Operation | None = None) -> dict[str, Any]:
    current = app.current_revision
    if current is None:
        status = "no current revision"
    elif current.status == "suspended":
        status = "suspended"
    else:
        status = "serving"
    return {
        "name": app.name,
        "status": status,
        "current_revision": revision_json(current, app) if current else None,
        "auth_mode": app.auth_mode,
        "owner": app.owner.get_username() if app.owner else None,
        "settings": app.settings,
        "scale_overrides": app.scale_overrides,
        "created_at": _at(app.created_at),
        "updated_at": _at(app.updated_at),
        "last_operation": operation_json(last_operation, steps=False) if last_operation else None,
        "previous_revision": _revision_ref(app.previous_revision_id),
        "current_since": _at(app.current_since),
        "current_set_by": _move_json(app.current_operation),
        "hold_on_rollback": app.hold_on_rollback,
        "held": app.held,
        "network": app.network,
        "hold": _hold_json(app) if app.held else None,
        "retention": {"keep": app.retention_keep, "enabled": app.retention_enabled},
    }


def _revision_ref(revision_id) -> dict[str, str] | None:
    return {"id": str(revision_id), "short_id": short_id(revision_id)} if revision_id else None


def _move_json(op: Operation | None) -> dict[str, Any] | None:
    """The operation that last moved the alias, in the few words on-call needs."""
    if op is None:
        return None
    return {
        "operation": str(op.id),
        "kind": op.kind,
        "by": op.requester_name,
        "source": op.source,
        "reason": op.reason,
        "at": _at(op.finished_at or op.started_at or op.created_at),
    }


def _hold_json(app: App) -> dict[str, Any]:
    op = app.held_operation
    return {
        "since": _at(app.held_at),
        "by": op.requester_name if op else None,
        "reason": op.reason if op else "",
        "operation": str(op.id) if op else None,
        "revision": _revision_ref(op.revision_id) if op else None,
    }


def parameters_json() -> list[dict[str, Any]]:
    return [
        {
            "name": p.name,
            "kind": p.kind,
            "default": p.default,
            "allowed": parameters.allowed(p),
            "minimum": p.minimum,
            "maximum": p.maximum,
            "unit": p.unit,
            "help": p.help,
        }
        for p in parameters.PARAMETERS.values()
    ]
