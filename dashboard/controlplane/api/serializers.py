"""The JSON shapes of the control API (dashboard/api_client.py relies on them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dashboard.controlplane import parameters
from dashboard.controlplane.models import App, Operation, Revision


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
    }


def parameters_json() -> list[dict[str, Any]]:
    return [
        {
            "name": p.name,
            "kind": p.kind,
            "default": p.default,
            "allowed": p.allowed,
            "minimum": p.minimum,
            "maximum": p.maximum,
            "unit": p.unit,
            "help": p.help,
        }
        for p in parameters.PARAMETERS.values()
    ]
