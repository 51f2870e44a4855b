"""Sending one delivery: sign it, POST it through the one HTTP seam, record the answer,
and say when to try again.

Signature: `X-Switchboard-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` where the HMAC
is keyed with the endpoint's secret over `"<t>.<body>"`, as Stripe signs its webhooks. The
timestamp is inside what is signed, so a receiver that refuses old timestamps refuses a
replayed delivery; README.md ("Webhooks") shows how to check it in Python.

Deliveries go wherever an admin pointed the endpoint, including addresses inside the
network (admins are trusted with that), but a redirect is never followed: a 3xx answer is
a failed attempt, so a receiver cannot bounce a signed body somewhere else.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from dashboard import httpclient
from dashboard.webhooks.models import Delivery, DeliveryStatus

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Switchboard-Signature"
USER_AGENT = "Switchboard-Webhooks/1"
# What is kept of a receiver's error or answer: enough to say what went wrong.
ERROR_LIMIT = 500
# A due delivery whose task has not run this long after it was due lost its message (Redis
# restarted, or it could not be queued): the sweeper queues it again.
LOST_AFTER = timedelta(seconds=60)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The value of X-Switchboard-Signature for `body` sent at `timestamp`."""
    signed = str(timestamp).encode() + b"." + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def backoff(attempts: int) -> float:
    """Seconds before the next attempt after `attempts` failed ones: doubling, capped."""
    return min(settings.WEBHOOK_RETRY_CAP, settings.WEBHOOK_RETRY_DELAY * 2 ** (attempts - 1))


def _claim(delivery_id: str) -> Delivery | None:
    """Take a due delivery for one attempt, or None if it is not due (or done, or gone).

    Moving next_attempt_at past this attempt's timeout in the same UPDATE is the lease: a
    second copy of the task (a redelivered message, or the sweeper's) finds it not due.
    """
    now = timezone.now()
    lease = timedelta(seconds=settings.WEBHOOK_TIMEOUT + 30)
    taken = Delivery.objects.filter(
        pk=delivery_id,
        status__in=[DeliveryStatus.PENDING, DeliveryStatus.RETRYING],
        next_attempt_at__lte=now + timedelta(seconds=1),
    ).update(next_attempt_at=now + lease)
    if not taken:
        return None
    return Delivery.objects.select_related("endpoint").get(pk=delivery_id)


def attempt(delivery_id: str) -> float | None:
    """Make one attempt at a delivery; return seconds until the next one, or None when
    nothing more is to be done (delivered, given up, or not this task's to send)."""
    delivery = _claim(delivery_id)
    if delivery is None:
        return None
    endpoint = delivery.endpoint
    body = delivery.body.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Switchboard-Event": delivery.event,
        "X-Switchboard-Delivery": str(delivery.id),
        SIGNATURE_HEADER: signature(endpoint.secret, int(time.time()), body),
    }
    code: int | None = None
    try:
        # One try per attempt (retries=0): the backoff between attempts is this module's.
        response = httpclient.request(
            "POST",
            endpoint.url,
            service=f"webhook endpoint {endpoint.id}",
            content=body,
            headers=headers,
            timeout=settings.WEBHOOK_TIMEOUT,
            retries=0,
        )
        code = response.status_code
        ok = 200 <= code < 300
        if ok:
            error = ""
        elif 300 <= code < 400:
            error = f"answered {code} (redirects are not followed)"
        else:
            error = f"answered {code}: {response.text[:200]}"
    except httpclient.Unavailable as exc:
        ok, error = False, exc.detail
    except Exception as exc:  # noqa: BLE001 - a bad URL or answer fails this attempt only.
        ok, error = False, f"{type(exc).__name__}: {exc}"

    now = timezone.now()
    attempts = delivery.attempts + 1
    update = {
        "attempts": attempts,
        "response_code": code,
        "error": error[:ERROR_LIMIT],
        "last_attempt_at": now,
    }
    retry_in: float | None = None
    if ok:
        update.update(status=DeliveryStatus.SUCCEEDED, finished_at=now)
    elif attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
        update.update(status=DeliveryStatus.FAILED, finished_at=now)
        log.warning("webhook delivery %s failed for good after %d attempts", delivery.id, attempts)
    else:
        retry_in = backoff(attempts)
        update.update(
            status=DeliveryStatus.RETRYING, next_attempt_at=now + timedelta(seconds=retry_in)
        )
    Delivery.objects.filter(pk=delivery.pk).update(**update)
    return retry_in


def enqueue(delivery: Delivery) -> None:
    """Hand a delivery to the worker. With the queue down it stays due, and the sweeper
    queues it once Redis is back; the caller (an operation ending) is never held up."""
    from dashboard.webhooks.tasks import deliver

    try:
        deliver.apply_async((str(delivery.id),), retry=False)
    except Exception as exc:  # noqa: BLE001 - kombu raises many types for "no broker".
        log.warning("could not queue webhook delivery %s: %s", delivery.id, exc)
        Delivery.objects.filter(pk=delivery.pk, attempts=0).update(
            error=f"task queue unavailable ({exc}); it is sent once the queue is back"
        )


def sweep() -> int:
    """Queue again every due delivery whose message was lost; return how many."""
    lost = Delivery.objects.filter(
        Q(status=DeliveryStatus.PENDING) | Q(status=DeliveryStatus.RETRYING),
        next_attempt_at__lt=timezone.now() - LOST_AFTER,
    )
    count = 0
    for delivery in lost[:500]:
        enqueue(delivery)
        count += 1
    return count
