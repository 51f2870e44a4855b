"""Reading a request body, in one place: JSON parsing with a depth limit, the check that
every field is one the endpoint knows, and the fingerprint an Idempotency-Key is bound to.

No Django import here beyond what the caller passes in: the runtime's admin API parses its
bodies with `parse_object` too, so both sides refuse the same bodies in the same words.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from dashboard.controlplane.errors import BadRequest

# Deep enough for any body the API takes (the deepest is two levels), shallow enough that
# walking it is cheap. Without a limit, a body of 100,000 '[' made json.loads raise
# RecursionError: a 500.
MAX_DEPTH = 32


def _depth_error() -> BadRequest:
    return BadRequest(
        f"the request body is nested more than {MAX_DEPTH} levels deep",
        details={"max_depth": MAX_DEPTH},
        code="json_too_deep",
    )


def _check_depth(value: Any) -> None:
    # Iterative, so that checking the depth cannot itself run out of stack.
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > MAX_DEPTH:
            raise _depth_error()
        stack.extend((child, depth + 1) for child in children)


def parse_object(raw: bytes | str) -> dict[str, Any]:
    """The body as a JSON object ({} when empty), or BadRequest saying what is wrong."""
    if not raw or not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except RecursionError:
        # The C parser gives up on nesting far past MAX_DEPTH before building anything.
        raise _depth_error() from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(
            f"the request body is not valid JSON: {exc}", code="invalid_json"
        ) from None
    _check_depth(data)
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object", code="invalid_json")
    return data


def check_fields(given: Iterable[str], allowed: Iterable[str]) -> None:
    """Refuse any field the endpoint does not know: a misspelt `forse` that was silently
    ignored would roll out gracefully while its sender believed they had forced it."""
    allowed = tuple(allowed)
    unknown = sorted(set(given) - set(allowed))
    if not unknown:
        return
    names = ", ".join(repr(name) for name in unknown)
    raise BadRequest(
        f"unknown field{'s' if len(unknown) > 1 else ''} {names} in the request body; "
        f"allowed: {', '.join(allowed) if allowed else 'none (send no body)'}",
        details={"unknown": unknown, "allowed": list(allowed)},
        code="unknown_field",
    )


def fingerprint(
    caller: object, method: str, path: str, body: Mapping[str, Any], files: Mapping[str, str]
) -> str:
    """What an Idempotency-Key is bound to: who asks, what, where, with which body.

    `body` is the parsed body (so whitespace and key order do not matter) and `files` maps
    each uploaded file's field to its content's SHA-256.
    """
    canonical = json.dumps(
        [str(caller), method.upper(), path, body, dict(files)],
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
