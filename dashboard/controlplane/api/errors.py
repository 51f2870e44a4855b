"""The API's one error shape: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt


def error_response(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> JsonResponse:
    return JsonResponse(
        {"error": {"code": code, "message": message, "details": details or {}}}, status=status
    )


# csrf_exempt: the API takes no cookies, and a POST to an unknown path must get this JSON
# 404, not Django's HTML CSRF page (CsrfViewMiddleware runs before any view).
@csrf_exempt
def not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    return error_response(
        404,
        "not_found",
        f"no API endpoint at {request.path}; see /api/v1/openapi.json",
        details={"path": request.path},
    )
