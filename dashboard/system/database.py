"""How a pooled PostgreSQL connection is checked before a request gets it.

settings.py gives Django's psycopg pool (DATABASES OPTIONS["pool"]) `check_connection`
as its `check` callback. psycopg_pool's own `ConnectionPool.check_connection` finds a
connection the server dropped, but the pool then retries the next idle connection at
once only the first time: before each further one it backs off (about 1 s, then 2 s, 4 s,
…; psycopg_pool's `_getconn_with_check_loop`). When the server dropped one connection it
has usually dropped them all (a restart, a failover, `pg_terminate_backend` of every
session), so with two or more idle connections the request that finds them waits a
second or more. Here the first failed check has the pool check all its idle connections
at once (`ConnectionPool.check()`, which discards the broken ones and opens replacements
in the background), so the retry takes a fresh connection instead of another dead one.
"""

from __future__ import annotations

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections
from psycopg_pool import ConnectionPool


def check_connection(conn: psycopg.Connection) -> None:
    """Raise if conn is broken, after having the pool replace its other broken ones."""
    try:
        ConnectionPool.check_connection(conn)
    except psycopg.Error:
        pool = connections[DEFAULT_DB_ALIAS].pool
        # Closed: Celery's prefork worker closes the pool between tasks.
        if pool is not None and not pool.closed:
            pool.check()
        raise
