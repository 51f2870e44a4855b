"""Sessions are read through the shared Redis cache (dashboard/web/sessions.py): a
sign-out ends the session for every web worker, and with Redis down the dashboard keeps
working from the database alone."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from django.conf import settings as conf
from django.core.cache import cache
from django.test import Client

from dashboard.web.sessions import cache_key_of
from tests.conftest import free_port
from tests.web.conftest import connections_held_by_the_server_at, signed_in_over_http
from tests.web.factories import make_user

pytestmark = pytest.mark.django_db


def signed_in() -> tuple[Client, str]:
    client = Client()
    response = client.post("/login/", {"username": "alice", "password": "pw-secret-1"})
    assert response.status_code == 302
    return client, client.cookies[conf.SESSION_COOKIE_NAME].value


def same_browser(session_key: str) -> Client:
    """Another client with the same cookie: what another web worker would be asked."""
    other = Client()
    other.cookies[conf.SESSION_COOKIE_NAME] = session_key
    return other


@pytest.fixture
def alice():
    return make_user("viewer", "alice")


def test_a_signed_in_session_is_cached_in_redis(alice):
    _client, key = signed_in()
    assert cache.get(cache_key_of(key))["_auth_user_id"] == str(alice.pk)
    assert same_browser(key).get("/").status_code == 200


def test_signing_out_ends_the_session_everywhere(alice):
    client, key = signed_in()
    assert client.post("/logout/").status_code == 302
    assert cache.get(cache_key_of(key)) is None
    assert same_browser(key).get("/").status_code == 302


def test_a_session_missing_from_the_cache_is_read_from_the_database(alice):
    _client, key = signed_in()
    cache.delete(cache_key_of(key))  # Redis restarted empty, say.
    assert same_browser(key).get("/").status_code == 200
    assert cache.get(cache_key_of(key)) is not None


def test_with_redis_down_sign_in_pages_and_sign_out_still_work(alice, settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
        }
    }
    client, key = signed_in()
    assert client.get("/").status_code == 200
    assert same_browser(key).get("/").status_code == 200
    assert client.post("/logout/").status_code == 302
    assert same_browser(key).get("/").status_code == 302


def test_sessions_survive_redis_dropping_its_connections(alice):
    # Django's Redis cache keeps one connection pool per server; the pool, not the
    # client, owns the sockets and reconnects.
    _client, key = signed_in()
    browser = same_browser(key)
    assert browser.get("/").status_code == 200
    redis_client = cache._cache.get_client()
    assert redis_client.client_kill_filter(_id=redis_client.client_id(), skipme=False) == 1
    assert browser.get("/").status_code == 200
    assert cache.get(cache_key_of(key))["_auth_user_id"] == str(alice.pk)


@pytest.mark.django_db(transaction=True)
def test_the_web_server_reads_sessions_on_connections_it_keeps(web_server):
    """Every signed-in request reads its session through Redis. Django's cache builds a
    client per request context, and under ASGI each request is one, so each request used
    to open a connection of its own; the web server now keeps its connections
    (dashboard/system/cache.py)."""
    redis_port = urlsplit(conf.REDIS_URL).port or 6379
    browser = signed_in_over_http(web_server)
    for _ in range(8):  # Each of granian's workers has connected by now.
        assert browser.get("/").status_code == 200
    kept = connections_held_by_the_server_at(web_server, redis_port)
    assert kept, "the web server keeps a Redis connection between requests"
    for _ in range(20):
        assert browser.get("/").status_code == 200
    assert connections_held_by_the_server_at(web_server, redis_port) == kept
