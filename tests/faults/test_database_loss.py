"""PostgreSQL connections terminated under a live API: no request answers 500."""

from __future__ import annotations

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from dashboard.controlplane.models import ApiToken, App, Profile, Role

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]


def terminate_other_connections_to_the_test_database() -> int:
    """Only this test database's sessions, never another database's (a demo's, say)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def test_terminated_database_connections_never_surface_as_a_500(system):
    user = get_user_model().objects.create_user("dba")
    Profile.objects.create(user=user, role=Role.ADMIN)
    _, token = ApiToken.issue(user, "faults", Role.ADMIN)
    api = httpx.Client(
        base_url=f"{system.api_url}/api/v1", headers={"Authorization": f"Bearer {token}"}
    )
    statuses = []
    terminated = 0
    for i in range(10):
        terminated += terminate_other_connections_to_the_test_database()
        statuses.append(api.get("/apps").status_code)
        terminated += terminate_other_connections_to_the_test_database()
        # A write: a refusal the API decides from the database (an unknown app's scale).
        statuses.append(api.post(f"/apps/nope-{i}/scale", json={"keep_alive": 5}).status_code)

    assert terminated > 0, "the live server's connection was terminated at least once"
    assert 500 not in statuses
    assert set(statuses) <= {200, 404, 503}
    assert statuses.count(200) == 10
    assert not App.objects.filter(name__startswith="nope-").exists()
