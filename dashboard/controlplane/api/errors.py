"""The API's one error shape: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse


def error_response(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> JsonResponse:
    return JsonResponse(
        {"error": {"code": code, "message": message, "details": details or {}}}, status=status
    )


def not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    return error_response(
        404, "not_found", f"no API endpoint at /api/v1/{path}; see /api/v1/openapi.json"
    )
