"""`manage.py create_user USERNAME --role viewer|deployer|admin [--password P]`."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from dashboard.controlplane.models import Profile, Role


class Command(BaseCommand):
    help = "Create a user with a Switchboard role (or change an existing user's role)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--role", choices=Role.values, required=True)
        parser.add_argument("--password", help="omit to create a user who cannot sign in")
        parser.add_argument("--email", default="")

    @transaction.atomic
    def handle(self, *args, username: str, role: str, password: str | None, email: str, **options):
        if not username.strip():
            raise CommandError("username may not be blank")
        User = get_user_model()
        user, created = User.objects.get_or_create(username=username, defaults={"email": email})
        if password:
            user.set_password(password)
        elif created:
            user.set_unusable_password()
        # Admins may use the Django admin to manage users and tokens (DESIGN.md section 8).
        user.is_staff = role == Role.ADMIN
        user.save()
        Profile.objects.update_or_create(user=user, defaults={"role": role})
        self.stdout.write(f"{'Created' if created else 'Updated'} user {username} ({role})")
