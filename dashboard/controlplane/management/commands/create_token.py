"""`manage.py create_token USERNAME [--role viewer|deployer|admin] [--name NAME]`.

Prints the raw token once: only its hash is stored, so it cannot be shown again.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from dashboard.controlplane.models import ApiToken, Role, role_of
from dashboard.controlplane.rules import role_allows


class Command(BaseCommand):
    help = "Create an API token for a user and print it once (only its hash is stored)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--role",
            choices=Role.values,
            help="the token's role; defaults to the user's own role, and may not exceed it",
        )
        parser.add_argument("--name", default="cli", help="a label to tell tokens apart")

    def handle(self, *args, username: str, role: str | None, name: str, **options) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r}; create one with create_user")
        user_role = role_of(user)
        if user_role is None:
            raise CommandError(f"user {username!r} is inactive")
        role = role or user_role
        if not role_allows(user_role, role):
            raise CommandError(
                f"user {username!r} is a {user_role}; a token cannot have a higher role ({role})"
            )
        token, raw = ApiToken.issue(user, name, role)
        self.stderr.write(
            f"Created token {token.hint}… ({role}) for {username}. It is shown only once:"
        )
        self.stdout.write(raw)
