"""The one seam for outbound HTTP from Switchboard's Python processes.

The CLI and the dashboard's Celery tasks call the control API through it, and the
control plane calls the runtime's admin API through it. It adds what every caller
needs: timeouts, retries with exponential backoff on connection errors and 5xx answers,
and an Idempotency-Key that stays the same across retries so a retried call never
applies twice. Tests point it at live servers; nothing here is mocked.

(The gateway's proxying to runners is the data plane, not a call to a service, and
uses aiohttp inside the runtime's event loop.)
"""

from __future__ import annotations

import logging
import random
import ssl
import threading
import time
from functools import cache
from typing import Any

import httpx

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({500, 502, 503, 504})
_local = threading.local()


class Unavailable(Exception):
    """The service could not be reached, or kept failing, after every retry."""

    def __init__(self, service: str, detail: str):
        self.service = service
        self.detail = detail
        super().__init__(f"{service} is unavailable: {detail}")


@cache
def _ssl_context() -> ssl.SSLContext:
    # Building one loads the whole CA bundle: rather than each thread's first call (such
    # as a web thread's first runtime sync) paying that, all share one.
    return httpx.create_ssl_context()


def _client() -> httpx.Client:
    # One pooled client per thread: Celery and gunicorn threads never share sockets.
    client = getattr(_local, "client", None)
    if client is None:
        client = _local.client = httpx.Client(
            http2=False, follow_redirects=False, verify=_ssl_context()
        )
    return client


def request(
    method: str,
    url: str,
    *,
    service: str,
    json: Any = None,
    content: bytes | None = None,
    data: dict[str, Any] | None = None,
    files: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
    retries: int = 4,
    idempotency_key: str | None = None,
    backoff: float = 0.25,
) -> httpx.Response:
    """Send one request, retrying transient failures; return the final response.

    4xx answers are returned at once: they are the server's considered answer. A POST
    without an idempotency key is only retried when the connection failed before the
    request was sent, because otherwise it may already have been applied.
    """
    headers = dict(headers or {})
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    safe_to_resend = method.upper() in ("GET", "HEAD", "OPTIONS", "PUT", "DELETE") or bool(
        idempotency_key
    )
    last_error = ""
    for attempt in range(retries + 1):
        if attempt:
            # Full jitter: spread retries of many callers after a shared outage.
            time.sleep(random.uniform(0, backoff * 2 ** (attempt - 1)))
        try:
            response = _client().request(
                method,
                url,
                json=json,
                content=content,
                data=data,
                files=files,
                params=params,
                headers=headers,
                timeout=timeout,
            )
        except httpx.ConnectError as exc:
            last_error = f"cannot connect to {url}: {exc}"
            continue
        except httpx.TransportError as exc:
            last_error = f"{type(exc).__name__} talking to {url}: {exc}"
            if not safe_to_resend:
                break
            continue
        if response.status_code in RETRY_STATUSES and safe_to_resend and attempt < retries:
            last_error = f"{url} answered {response.status_code}"
            log.warning("%s; retrying (attempt %d of %d)", last_error, attempt + 1, retries)
            continue
        return response
    raise Unavailable(service, last_error)
