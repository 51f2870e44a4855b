"""Errors every control-plane module may raise; the API turns them into JSON answers.

Keeping them out of the API package lets plain modules (lookup, operations, bundles)
say precisely what was wrong without knowing about HTTP.
"""

from __future__ import annotations

from typing import Any


class ControlError(Exception):
    """A refusal with a precise, user-facing message. `status` is the HTTP status to answer."""

    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        status: int | None = None,
        code: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.details = details or {}
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code


class BadRequest(ControlError):
    status = 400
    code = "bad_request"


class Unauthenticated(ControlError):
    status = 401
    code = "unauthenticated"


class Forbidden(ControlError):
    status = 403
    code = "forbidden"


class NotFound(ControlError):
    status = 404
    code = "not_found"


class Conflict(ControlError):
    status = 409
    code = "conflict"


class TooLarge(ControlError):
    status = 413
    code = "too_large"


class Unavailable(ControlError):
    status = 503
    code = "unavailable"
