"""Switchboard's settings with Django's own Redis cache backend, for the side-by-side
poll in bench/run.py (`web_stacks`): settings.py gives every request of a process one
Redis client (dashboard/system/cache.py); here each request builds its own, as Django's
backend does under ASGI."""

from dashboard.settings import *  # noqa: F403 - everything else exactly as shipped.
from dashboard.settings import CACHES

CACHES = {
    "default": {**CACHES["default"], "BACKEND": "django.core.cache.backends.redis.RedisCache"}
}
