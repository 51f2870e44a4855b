"""The OpenAPI 3.1 document, generated from the code: the URL routes, and for each method
what its view declares to `api_view` (role, body, query, answers; api/schemas.py).

Nothing here describes a route by hand: a route, a field or an answer added to a view is in
the document, and a field the view stops sending is gone from it. The tests validate every
answer of the suite against this document (tests/controlplane/conftest.py), and
schemathesis calls the live API from it (tests/contract/).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from dashboard.controlplane.api import schemas

TEXT = "text/plain"  # An answer that is text, not JSON (logs).

ERRORS = {
    400: "Bad input; nothing changed",
    401: "Missing or invalid token",
    403: "The token's role does not allow this",
    404: "Unknown app, revision, runner, operation or webhook",
    405: "Method not allowed (see the Allow header)",
    409: "Refused in the current state (e.g. another operation is in progress); nothing changed",
    413: "Body or bundle over the size limit",
    422: "Idempotency-Key reused for a different request, or the bundle's code cannot deploy",
    429: "Too many failed token checks from this address",
    503: "The runtime or the task queue is unavailable",
}
PUBLIC_ERRORS = (405,)


@dataclass(frozen=True)
class Route:
    """What one method of one URL takes and answers, as its view declared it."""

    method: str
    role: str | None  # None: public, no token needed.
    answers: dict[int, type[BaseModel] | str]
    body: type[BaseModel] | None = None
    form: bool = False
    query: type[BaseModel] | None = None
    summary: str = ""
    errors: tuple[int, ...] = field(default=tuple(ERRORS))


IDEMPOTENCY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Same requester, key, method, path and body return the original "
    "operation (with replayed: true); nothing applies twice. The key on a different request "
    "is refused: 422 idempotency_key_reused.",
    "schema": {"type": "string", "maxLength": 200},
}
SOURCE = {
    "name": "X-Switchboard-Source",
    "in": "header",
    "required": False,
    "description": "Recorded on the operation: cli or api. `dashboard` and `retention` are "
    "reserved (403 source_not_allowed for an API token).",
    "schema": {"type": "string", "enum": ["cli", "api"], "default": "api"},
}


def openapi_path(pattern: str) -> tuple[str, list[str]]:
    names = re.findall(r"<(?:\w+:)?(\w+)>", pattern)
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", pattern), names


def routes() -> list[tuple[str, list[str], list[Route]]]:
    """(OpenAPI path, path parameter names, the routes of its methods), in URL order."""
    from dashboard.controlplane.api import urls as api_urls
    from dashboard.webhooks import urls as webhook_urls

    found = []
    for pattern in [*webhook_urls.urlpatterns, *api_urls.urlpatterns]:
        contract = getattr(pattern.callback, "contract", None)
        if not pattern.name or contract is None:
            continue
        path, names = openapi_path(str(pattern.pattern))
        found.append((path, names, list(contract.values())))
    return found


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _query_parameters(model: type[BaseModel], refs: dict, components: dict) -> list[dict]:
    resolved = components[refs[(model, "validation")]["$ref"].rsplit("/", 1)[-1]]
    required = set(resolved.get("required", ()))
    return [
        {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": {k: v for k, v in prop.items() if k != "description"},
            **({"description": prop["description"]} if "description" in prop else {}),
        }
        for name, prop in resolved["properties"].items()
    ]


def _operation(
    route: Route, path: str, path_params: list[str], refs: dict, components: dict
) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in path_params
    ]
    if route.query is not None:
        parameters += _query_parameters(route.query, refs, components)
    if route.method != "GET":
        parameters += [IDEMPOTENCY, SOURCE]
    responses: dict[str, Any] = {}
    for status, answer in route.answers.items():
        if answer == TEXT:
            content = {TEXT: {"schema": {"type": "string"}}}
        else:
            content = {"application/json": {"schema": refs[(answer, "serialization")]}}
        responses[str(status)] = {"description": _describe(answer), "content": content}
    errors = route.errors if route.role else PUBLIC_ERRORS
    for status in errors:
        responses.setdefault(
            str(status),
            {
                "description": ERRORS[status],
                "content": {"application/json": {"schema": _ref("Error")}},
            },
        )
    operation: dict[str, Any] = {
        "summary": route.summary,
        "operationId": route.method.lower()
        + "_"
        + (re.sub(r"\W+", "_", path).strip("_") or "root"),
        "parameters": parameters,
        "responses": responses,
    }
    if route.role is None:
        operation["security"] = []
    else:
        operation["description"] = f"Needs the {route.role} role."
    if route.body is not None:
        media = "multipart/form-data" if route.form else "application/json"
        operation["requestBody"] = {
            "required": route.form
            or any(f.is_required() for f in route.body.model_fields.values()),
            "content": {media: {"schema": refs[(route.body, "validation")]}},
        }
    return operation


def _describe(answer: type[BaseModel] | str) -> str:
    doc = "" if isinstance(answer, str) else (answer.__doc__ or "")
    return doc.strip().splitlines()[0] if doc.strip() else "OK"


@cache
def document() -> dict[str, Any]:
    found = routes()
    models: set[tuple[type[BaseModel], str]] = {(schemas.Error, "serialization")}
    for _, _, methods in found:
        for route in methods:
            models |= {(m, "serialization") for m in route.answers.values() if m != TEXT}
            models |= {(m, "validation") for m in (route.body, route.query) if m is not None}
    ordered = sorted(models, key=lambda pair: (pair[0].__name__, pair[1]))
    refs, defs = models_json_schema(ordered, ref_template="#/components/schemas/{model}")
    components = defs.get("$defs", {})
    paths: dict[str, Any] = {}
    for path, names, methods in found:
        for route in methods:
            paths.setdefault(path, {})[route.method.lower()] = _operation(
                route, path, names, refs, components
            )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Switchboard control API",
            "version": "1",
            "description": "The one way to change Switchboard's state. Every mutation is "
            "recorded as an operation, serialised per app, and honours Idempotency-Key. "
            "Generated from the code (dashboard/controlplane/api/contract.py).",
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token (sbt_...) from `manage.py create_token`, or "
                    "a dashboard token (sbd_...).",
                }
            },
            "schemas": components,
        },
    }
