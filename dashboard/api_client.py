"""A typed client for the control API (/api/v1/), used by the CLI and the dashboard's tasks.

Every call goes through dashboard.httpclient. Errors come back as ApiError carrying the
server's precise message; an unreachable API raises httpclient.Unavailable.

The API's error body is always {"error": {"code": "...", "message": "...", "details": {...}}}.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from dashboard import httpclient
from dashboard.controlplane.api import schemas as S


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: dict | None = None):
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        super().__init__(message)


@dataclass
class ControlApi:
    base_url: str
    token: str
    source: str = "api"  # cli | dashboard | api: recorded on every operation.
    timeout: float = 30.0
    retries: int = 4
    extra_headers: dict[str, str] = field(default_factory=dict)

    # -- plumbing ---------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: dict[str, Any] | None = None,
        files: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        raw: bool = False,
        shape: type[BaseModel] | None = None,
    ) -> Any:
        mutating = method.upper() in ("POST", "DELETE", "PATCH", "PUT")
        if mutating and idempotency_key is None:
            # A fresh key per logical call: retries inside httpclient reuse it.
            idempotency_key = str(uuid.uuid4())
        response = httpclient.request(
            method,
            self.base_url.rstrip("/") + "/api/v1/" + path.lstrip("/"),
            service="control API",
            json=json_body,
            data=data,
            files=files,
            params={k: v for k, v in (params or {}).items() if v is not None},
            headers={
                "Authorization": f"Bearer {self.token}",
                "X-Switchboard-Source": self.source,
                "Accept": "application/json",
                **self.extra_headers,
            },
            timeout=self.timeout,
            retries=self.retries,
            idempotency_key=idempotency_key if mutating else None,
        )
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                raise ApiError(
                    response.status_code,
                    error.get("code", "error"),
                    error["message"],
                    error.get("details"),
                )
            except (ValueError, KeyError, TypeError):
                raise ApiError(
                    response.status_code,
                    "http_error",
                    f"HTTP {response.status_code}: {response.text[:200]}",
                ) from None
        if raw:
            return response.text
        data = response.json() if response.content else {}
        if shape is None and mutating and isinstance(data, dict) and "operation" in data:
            shape = S.OperationAnswer  # Every mutation's answer; extras are the route's own.
        if shape is not None:
            _check_shape(shape, data, response.status_code)
        return data

    # -- reads ------------------------------------------------------------------------

    def whoami(self) -> dict:
        return self.call("GET", "me", shape=S.Me)

    def list_apps(self) -> list[dict]:
        return self.call("GET", "apps", shape=S.AppList)["apps"]

    def get_app(self, app: str) -> dict:
        return self.call("GET", f"apps/{app}", shape=S.AppDetail)

    def list_revisions(
        self, app: str, *, status: str | None = None, page: int = 1, page_size: int = 50
    ) -> dict:
        return self.call(
            "GET",
            f"apps/{app}/revisions",
            params={"status": status, "page": page, "page_size": page_size},
            shape=S.RevisionPage,
        )

    def get_revision(self, app: str, rev: str) -> dict:
        return self.call("GET", f"apps/{app}/revisions/{rev}", shape=S.Revision)

    def get_operation(self, operation_id: str) -> dict:
        return self.call("GET", f"operations/{operation_id}", shape=S.Operation)

    def history(self, app: str, *, page: int = 1, page_size: int = 50) -> dict:
        return self.call(
            "GET",
            f"apps/{app}/operations",
            params={"page": page, "page_size": page_size},
            shape=S.OperationPage,
        )

    def health(self, app: str) -> dict:
        """Current's and Previous's traffic over the last 5 minutes and Current's runners."""
        return self.call("GET", f"apps/{app}/health", shape=S.AppHealth)

    def runners(self, app: str) -> list[dict]:
        return self.call("GET", f"apps/{app}/runners", shape=S.RunnerList)["runners"]

    def logs(
        self, app: str, *, revision: str | None = None, runner: str | None = None, tail: int = 200
    ) -> str:
        return self.call(
            "GET",
            f"apps/{app}/logs",
            params={"revision": revision, "runner": runner, "tail": tail},
            raw=True,
        )

    def diff(self, app: str, a: str, b: str) -> dict:
        """What changed from revision `a` to revision `b` of `app`."""
        return self.call("GET", f"apps/{app}/diff", params={"a": a, "b": b})

    def preview_deploy(
        self,
        app: str,
        bundle: bytes,
        entrypoint: str,
        *,
        strategy: str = "rolling",
        reset_scale: bool = False,
        message: str = "",
        annotations: dict[str, str] | None = None,
        auth_mode: str | None = None,
    ) -> dict:
        """The revision this deploy would create; the server changes nothing."""
        fields = {
            "entrypoint": entrypoint,
            "strategy": strategy,
            "reset_scale": "true" if reset_scale else "false",
            "message": message,
            "annotations": json.dumps(annotations or {}),
        }
        if auth_mode:
            fields["auth_mode"] = auth_mode
        # The server runs the import check within the request (up to 45 s): wait for it.
        slow = dataclasses.replace(self, timeout=max(self.timeout, 90.0))
        return slow.call(
            "POST",
            f"apps/{app}/revisions/preview",
            data=fields,
            files={"bundle": ("bundle.tar.gz", bundle, "application/gzip")},
        )

    # -- mutations: each returns {"operation": {...}, ...} -------------------------------

    def deploy(
        self,
        app: str,
        bundle: bytes,
        entrypoint: str,
        *,
        strategy: str = "rolling",
        reset_scale: bool = False,
        message: str = "",
        annotations: dict[str, str] | None = None,
        auth_mode: str | None = None,
        promote: bool = False,
        idempotency_key: str | None = None,
    ) -> dict:
        fields = {
            "entrypoint": entrypoint,
            "strategy": strategy,
            "reset_scale": "true" if reset_scale else "false",
            "message": message,
            "annotations": json.dumps(annotations or {}),
        }
        if auth_mode:
            fields["auth_mode"] = auth_mode
        if promote:
            fields["promote"] = "true"
        return self.call(
            "POST",
            f"apps/{app}/revisions",
            data=fields,
            files={"bundle": ("bundle.tar.gz", bundle, "application/gzip")},
            idempotency_key=idempotency_key,
        )

    def set_rev(
        self,
        app: str,
        rev: str,
        *,
        strategy: str = "rolling",
        reason: str = "",
        expected_current: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict:
        body = {"revision": rev, "strategy": strategy, "reason": reason}
        return self.call(
            "POST",
            f"apps/{app}/set-rev",
            json_body=_expecting(body, expected_current),
            idempotency_key=idempotency_key,
        )

    def rollout(
        self,
        app: str,
        *,
        force: bool = False,
        reason: str = "",
        expected_current: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict:
        return self.call(
            "POST",
            f"apps/{app}/rollout",
            json_body=_expecting({"force": force, "reason": reason}, expected_current),
            idempotency_key=idempotency_key,
        )

    def delete_revision(
        self,
        app: str,
        rev: str,
        *,
        reason: str = "",
        expected_current: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict:
        return self.call(
            "DELETE",
            f"apps/{app}/revisions/{rev}",
            json_body=_expecting({"reason": reason}, expected_current),
            idempotency_key=idempotency_key,
        )

    def scale(
        self,
        app: str,
        values: dict[str, Any],
        *,
        reason: str = "",
        idempotency_key: str | None = None,
    ) -> dict:
        return self.call(
            "POST",
            f"apps/{app}/scale",
            json_body={**values, "reason": reason},
            idempotency_key=idempotency_key,
        )

    def suspend(
        self,
        app: str,
        rev: str | None = None,
        *,
        reason: str = "",
        expected_current: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict:
        return self.call(
            "POST",
            f"apps/{app}/suspend",
            json_body=_expecting({"revision": rev, "reason": reason}, expected_current),
            idempotency_key=idempotency_key,
        )

    def resume(
        self,
        app: str,
        rev: str | None = None,
        *,
        reason: str = "",
        idempotency_key: str | None = None,
    ) -> dict:
        return self.call(
            "POST",
            f"apps/{app}/resume",
            json_body={"revision": rev, "reason": reason},
            idempotency_key=idempotency_key,
        )

    def stop_runner(
        self,
        runner_id: str,
        *,
        replace: bool = False,
        reason: str = "",
        idempotency_key: str | None = None,
    ) -> dict:
        return self.call(
            "POST",
            f"runners/{runner_id}/stop",
            json_body={"replace": replace, "reason": reason},
            idempotency_key=idempotency_key,
        )

    def kill_runner(
        self, runner_id: str, *, reason: str = "", idempotency_key: str | None = None
    ) -> dict:
        return self.call(
            "POST",
            f"runners/{runner_id}/kill",
            json_body={"reason": reason},
            idempotency_key=idempotency_key,
        )

    def cancel_operation(self, app: str, operation_id: str, *, reason: str = "") -> dict:
        return self.call(
            "POST", f"apps/{app}/operations/{operation_id}/cancel", json_body={"reason": reason}
        )

    def release(self, app: str, *, reason: str = "", idempotency_key: str | None = None) -> dict:
        return self.call(
            "POST",
            f"apps/{app}/release",
            json_body={"reason": reason},
            idempotency_key=idempotency_key,
        )

    def hold_policy(
        self,
        app: str,
        hold_on_rollback: bool,
        *,
        reason: str = "",
        idempotency_key: str | None = None,
    ) -> dict:
        return self.call(
            "POST",
            f"apps/{app}/hold-policy",
            json_body={"hold_on_rollback": hold_on_rollback, "reason": reason},
            idempotency_key=idempotency_key,
        )

    def pin(
        self, app: str, rev: str, *, reason: str = "", idempotency_key: str | None = None
    ) -> dict:
        return self.call(
            "POST",
            f"apps/{app}/revisions/{rev}/pin",
            json_body={"reason": reason},
            idempotency_key=idempotency_key,
        )

    def unpin(
        self, app: str, rev: str, *, reason: str = "", idempotency_key: str | None = None
    ) -> dict:
        return self.call(
            "POST",
            f"apps/{app}/revisions/{rev}/unpin",
            json_body={"reason": reason},
            idempotency_key=idempotency_key,
        )

    def retention(self, app: str, *, dry_run: bool = False) -> dict:
        """The app's retention settings; with dry_run, what retention would delete and why
        every other revision stays."""
        return self.call("GET", f"apps/{app}/retention", params={"dry_run": 1} if dry_run else None)

    def set_retention(
        self,
        app: str,
        *,
        keep: int | None = None,
        enabled: bool | None = None,
        dry_run: bool = False,
        reason: str = "",
        idempotency_key: str | None = None,
    ) -> dict:
        body: dict[str, Any] = {"reason": reason}
        if keep is not None:
            body["keep"] = keep
        if enabled is not None:
            body["enabled"] = enabled
        if dry_run:
            body["dry_run"] = True
        return self.call(
            "POST", f"apps/{app}/retention", json_body=body, idempotency_key=idempotency_key
        )

    def set_network(
        self, app: str, network: str, *, reason: str = "", idempotency_key: str | None = None
    ) -> dict:
        return self.call(
            "POST",
            f"apps/{app}/network",
            json_body={"network": network, "reason": reason},
            idempotency_key=idempotency_key,
        )

    # -- webhooks (admin) ---------------------------------------------------------------

    def list_webhooks(self) -> list[dict]:
        return self.call("GET", "webhooks")["webhooks"]

    def add_webhook(
        self,
        url: str,
        *,
        app: str | None = None,
        events: list[str] | None = None,
        format: str = "json",
        description: str = "",
    ) -> dict:
        """Register an endpoint; the answer carries its signing secret, shown only here."""
        body: dict[str, Any] = {"url": url, "format": format, "events": events or []}
        if app:
            body["app"] = app
        if description:
            body["description"] = description
        return self.call("POST", "webhooks", json_body=body)

    def remove_webhook(self, webhook_id: int | str) -> dict:
        return self.call("DELETE", f"webhooks/{webhook_id}")

    def webhook_deliveries(
        self, webhook_id: int | str, *, page: int = 1, page_size: int = 50
    ) -> dict:
        return self.call(
            "GET",
            f"webhooks/{webhook_id}/deliveries",
            params={"page": page, "page_size": page_size},
        )

    def test_webhook(self, webhook_id: int | str) -> dict:
        return self.call("POST", f"webhooks/{webhook_id}/test")["delivery"]


def _expecting(body: dict[str, Any], expected_current: str | None) -> dict[str, Any]:
    """The body with expected_current when the caller gave one (the API's 409
    current_changed then refuses the call if Current moved since they looked)."""
    return {**body, "expected_current": expected_current} if expected_current else body


def _check_shape(shape: type[BaseModel], data: Any, status: int) -> None:
    """An answer outside the API's declared shape is an error here, not a guess later.
    Fields this client does not know yet (a newer server) are let through."""
    try:
        shape.model_validate(data, extra="ignore")
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(map(str, first["loc"])) or "(root)"
        raise ApiError(
            status,
            "unexpected_answer",
            f"the API's answer is not a {shape.__name__}: {where}: {first['msg']}",
        ) from None
