"""Which database connections each process keeps: Django's psycopg pool on PostgreSQL
(SWITCHBOARD_DB_POOL_SIZE), none on SQLite; a bad size stops the process, naming it."""

from __future__ import annotations

import pytest

from tests.conftest import _db_url
from tests.security.test_secrets import run

SHOW_POOL = (
    "from django.conf import settings; pool = settings.DATABASES['default']['OPTIONS']"
    ".get('pool'); print(pool and (pool['max_size'], pool['check'].__module__))"
)


def test_postgresql_connections_come_from_a_checked_pool_of_the_configured_size(tmp_path, db):
    url = _db_url()
    shown = run(tmp_path / "var", "shell", "-v0", "-c", SHOW_POOL, DATABASE_URL=url)
    assert shown.stdout.split() == ["(4,", "'dashboard.system.database')"], shown.stderr
    sized = run(tmp_path / "var", "shell", "-v0", "-c", SHOW_POOL, DATABASE_URL=url,
                SWITCHBOARD_DB_POOL_SIZE="2")  # fmt: skip
    assert sized.stdout.split() == ["(2,", "'dashboard.system.database')"], sized.stderr
    # 0: a connection per request, checked at its first use.
    none = run(tmp_path / "var", "shell", "-v0", "-c", SHOW_POOL, DATABASE_URL=url,
               SWITCHBOARD_DB_POOL_SIZE="0")  # fmt: skip
    assert none.stdout.strip() == "None", none.stderr


def test_sqlite_has_no_pool(tmp_path):
    shown = run(tmp_path / "var", "shell", "-v0", "-c", SHOW_POOL)
    assert shown.stdout.strip() == "None", shown.stderr


@pytest.mark.parametrize("size", ["-1", "four"])
def test_a_bad_pool_size_stops_the_process_naming_the_variable(tmp_path, size):
    refused = run(tmp_path / "var", "check", SWITCHBOARD_DB_POOL_SIZE=size)
    assert refused.returncode != 0
    assert "ImproperlyConfigured: SWITCHBOARD_DB_POOL_SIZE must be" in refused.stderr
    assert f"got {size}" in refused.stderr or f"got {size!r}" in refused.stderr
