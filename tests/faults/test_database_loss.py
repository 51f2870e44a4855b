"""PostgreSQL connections terminated under a live API: no request answers 500."""

from __future__ import annotations

import httpx
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection

from dashboard.controlplane.models import ApiToken, App, Profile, Role
from tests.web.conftest import connections_held_by_the_server_at

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]


def terminate_other_connections_to_the_test_database() -> int:
    """Only this test database's sessions, never another database's (a demo's, say)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def admin_api(base_url: str) -> httpx.Client:
    user = get_user_model().objects.create_user("dba")
    Profile.objects.create(user=user, role=Role.ADMIN)
    _, token = ApiToken.issue(user, "faults", Role.ADMIN)
    return httpx.Client(
        base_url=f"{base_url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def requests_each_after_terminating(api: httpx.Client, rounds: int) -> tuple[list[int], int]:
    """A read and a write per round, each sent once every other connection to the test
    database was terminated: their statuses, and how many connections were terminated."""
    statuses = []
    terminated = 0
    for i in range(rounds):
        terminated += terminate_other_connections_to_the_test_database()
        statuses.append(api.get("/apps").status_code)
        terminated += terminate_other_connections_to_the_test_database()
        # A write: a refusal the API decides from the database (an unknown app's scale).
        statuses.append(api.post(f"/apps/nope-{i}/scale", json={"keep_alive": 5}).status_code)
    return statuses, terminated


def test_terminated_database_connections_never_surface_as_a_500(system):
    api = admin_api(system.api_url)
    statuses, terminated = requests_each_after_terminating(api, 10)

    assert terminated > 0, "the live server's connection was terminated at least once"
    assert 500 not in statuses
    assert set(statuses) <= {200, 404, 503}
    assert statuses.count(200) == 10
    assert not App.objects.filter(name__startswith="nope-").exists()


def database_ports_of_the_server_at(url: str) -> set[int]:
    return connections_held_by_the_server_at(
        url, int(settings.DATABASES["default"].get("PORT") or 5432)
    )


def test_the_web_servers_pool_keeps_its_connections_and_replaces_terminated_ones(web_server):
    """granian runs each request's sync code on a thread of its own: without a pool every
    request would connect anew. The pool keeps the connections between requests, and a
    request that finds them terminated is served on new ones (dashboard/system/database.py).
    """
    api = admin_api(web_server)
    assert api.get("/apps").status_code == 200
    kept = database_ports_of_the_server_at(web_server)
    assert kept, "the web server keeps a database connection between requests"
    for _ in range(5):
        assert api.get("/apps").status_code == 200
    assert database_ports_of_the_server_at(web_server) == kept, "the same ones, reused"

    statuses, terminated = requests_each_after_terminating(api, 5)

    assert terminated >= 10, "each round terminated the web server's connection"
    # Each request found its connection terminated and was served on a new one: not even
    # the retry of DatabaseLostMiddleware (a 503 for a write) was needed.
    assert statuses == [200, 404] * 5
    replaced = database_ports_of_the_server_at(web_server)
    assert replaced and not replaced & kept
    # Four workers, each with a pool of at most SWITCHBOARD_DB_POOL_SIZE: nothing leaked.
    assert len(replaced) <= 4 * settings.DB_POOL_SIZE
    assert not App.objects.filter(name__startswith="nope-").exists()
