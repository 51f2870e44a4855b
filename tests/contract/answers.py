"""Checking an answer of /api/ against the generated OpenAPI document: the route and method
must be documented, the status listed for it, and a JSON body valid against its schema.

tests/conftest.py runs this on every answer the Django test client gets in the suite.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from django.urls import Resolver404, resolve
from jsonschema import Draft202012Validator, FormatChecker

API = "/api/v1"


@cache
def _document() -> dict[str, Any]:
    from dashboard.controlplane.api.contract import document

    return document()


@cache
def _validator(schema_json: str) -> Draft202012Validator:
    schema = json.loads(schema_json)
    return Draft202012Validator(
        {**schema, "components": _document()["components"]}, format_checker=FormatChecker()
    )


def _route(path: str) -> str | None:
    """The document's path for a request path, or None for a URL with no route (the API's
    JSON 404 answers those)."""
    try:
        match = resolve(path)
    except Resolver404:
        return None
    if not path.startswith(API + "/") or match.url_name is None:
        return None
    from dashboard.controlplane.api.contract import openapi_path

    return openapi_path(match.route.removeprefix(API.lstrip("/") + "/"))[0]


def problems(method: str, path: str, status: int, content_type: str, body: bytes) -> list[str]:
    """Why this answer is outside the document (an empty list when it conforms)."""
    if not path.startswith("/api/") or method in ("HEAD", "OPTIONS"):
        return []
    doc = _document()
    route = _route(path)
    if route is None:
        schema: dict[str, Any] = {"$ref": "#/components/schemas/Error"}
        media = "application/json"
    else:
        operations = doc["paths"].get(route)
        if operations is None:
            return [f"{route} is not in the document"]
        operation = operations.get(method.lower())
        if operation is None:
            if status == 405:
                schema, media = {"$ref": "#/components/schemas/Error"}, "application/json"
            else:
                return [f"{method} {route} answered {status} but is not in the document"]
        else:
            answer = operation["responses"].get(str(status))
            if answer is None:
                return [f"{method} {route} answered {status}, which its document does not list"]
            media, described = next(iter(answer["content"].items()))
            schema = described["schema"]
    if not content_type.startswith(media):
        return [f"{method} {path} answered {content_type!r}; the document says {media}"]
    if media != "application/json":
        return []
    try:
        data = json.loads(body)
    except ValueError as exc:
        return [f"{method} {path} answered invalid JSON: {exc}"]
    validator = _validator(json.dumps(schema, sort_keys=True))
    return [
        f"{method} {path} {status}: {'/'.join(map(str, error.absolute_path)) or '(root)'}: "
        f"{error.message}"
        for error in validator.iter_errors(data)
    ]
