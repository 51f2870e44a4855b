"""The local admin that `manage.py up` makes, so a newcomer can sign in and use the CLI at once.

The password and the raw API token are kept in VAR_DIR (readable by the owner only): the
database stores only hashes, and re-running `up` must hand out the same credentials.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.contrib.auth import get_user_model

from dashboard.controlplane.models import ApiToken, Profile, Role, hash_token

ADMIN_USERNAME = "admin"
TOKEN_NAME = "local admin (manage.py up)"


def _write_secret(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # The mode above applies only to a file this call creates.
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")


def _read_secret(path: Path) -> str:
    return path.read_text().strip() if path.exists() else ""


def ensure_admin(var_dir: Path) -> tuple[object, str]:
    """Return (user, password) of the local superuser, creating either when missing."""
    password_file = var_dir / "admin-password"
    password = _read_secret(password_file)
    fresh_password = not password
    if fresh_password:
        password = secrets.token_urlsafe(12)
        _write_secret(password_file, password)
    user, created = get_user_model().objects.get_or_create(username=ADMIN_USERNAME)
    user.is_staff = user.is_superuser = user.is_active = True
    # An existing admin keeps a password they may have changed, unless the file was new.
    if created or fresh_password:
        user.set_password(password)
    user.save()
    Profile.objects.update_or_create(user=user, defaults={"role": Role.ADMIN})
    return user, password


def ensure_token(user, var_dir: Path) -> str:
    """The raw admin API token: the stored one while it is still valid, else a new one."""
    token_file = var_dir / "admin-token"
    raw = _read_secret(token_file)
    if (
        raw
        and ApiToken.objects.filter(
            token_hash=hash_token(raw), user=user, revoked_at__isnull=True
        ).exists()
    ):
        return raw
    _, raw = ApiToken.issue(user, TOKEN_NAME, Role.ADMIN)
    _write_secret(token_file, raw)
    return raw
