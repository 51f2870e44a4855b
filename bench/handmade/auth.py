"""Authentication backend for the dashboard's signed-in users.

Django's ModelBackend, except for get_user, which runs on every signed-in request to load
the session's user: the ORM rebuilds and compiles the same primary-key SELECT each time,
about half of that call's cost (≈ 0.3 of ≈ 0.6 ms on a 2-core machine), and the progress
poll, the dashboard's most frequent request, has a 5 ms budget (BENCHMARKS.md). Here the
SQL is written once and the row still becomes an ordinary User; the checks are
ModelBackend's own (an inactive user is refused).
"""

from __future__ import annotations

from functools import cache

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.db import connection


@cache
def _user_by_pk_sql() -> str:
    user_model = get_user_model()
    q = connection.ops.quote_name
    return (
        f"SELECT * FROM {q(user_model._meta.db_table)} WHERE {q(user_model._meta.pk.column)} = %s"
    )


class SessionUserBackend(ModelBackend):
    def get_user(self, user_id):
        # `user_id` is the session's, already converted by django.contrib.auth.get_user.
        user_model = get_user_model()
        user = next(iter(user_model._default_manager.raw(_user_by_pk_sql(), [user_id])), None)
        return user if user is not None and self.user_can_authenticate(user) else None
