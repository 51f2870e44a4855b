"""Short-lived signed tokens the dashboard's Celery tasks use to call the control API as
the signed-in user. Nothing is stored: the signature (SECRET_KEY) is the proof, and the
API re-checks the user's current role on every call."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core import signing

PREFIX = "sbd_"
SALT = "switchboard.dashboard-api-token"
MAX_AGE = 2 * 3600  # Long enough for a task's retries, short enough to be harmless if leaked.


def issue_dashboard_token(user) -> str:
    return PREFIX + signing.dumps({"u": user.pk}, salt=SALT, compress=True)


def user_from_dashboard_token(token: str):
    """The active user the token was issued to, or None if it is forged, expired or stale."""
    if not token.startswith(PREFIX):
        return None
    try:
        payload = signing.loads(token[len(PREFIX) :], salt=SALT, max_age=MAX_AGE)
    except signing.BadSignature:
        return None
    return get_user_model().objects.filter(pk=payload.get("u"), is_active=True).first()
