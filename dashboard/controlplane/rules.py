"""The API's rules for app names and roles, with no Django import.

The CLI checks them before it builds and uploads a bundle, so a bad name or a viewer's
token is refused at once, in the API's own words; the API, the runtime and the dashboard
check the same functions.
"""

from __future__ import annotations

import re

# \A and \Z, not ^ and $: `$` also matches before a trailing newline, so "demo\n" would
# pass; RegexValidator uses search(), so the anchors must be in the pattern itself.
APP_NAME_RE = re.compile(r"\A[a-z][a-z0-9-]{0,62}\Z")
APP_NAME_RULE = "1–63 characters, lowercase letters, digits and '-', starting with a letter"

# The largest page any listing of the API answers; the CLI offers no more.
MAX_PAGE_SIZE = 200

# A revision reference: a full id or a unique prefix of this many hex characters or more,
# with or without dashes, in any case.
MIN_PREFIX = 8
HEX_RE = re.compile(r"\A[0-9a-f]+\Z")

ROLES = ("viewer", "deployer", "admin")  # Each may do everything the ones before it may.


def app_name_error(name: str) -> str | None:
    """Why `name` cannot name an app, or None if it can."""
    return (
        None
        if APP_NAME_RE.fullmatch(name)
        else f"{name!r} is not a valid app name: {APP_NAME_RULE}"
    )


def revision_ref(ref: str) -> tuple[str | None, str | None]:
    """(the hex digits `ref` names, None) or (None, why it cannot name a revision).

    The server resolves what it names (controlplane.revisions.resolve); the CLI refuses
    a malformed one before calling, in the same words.
    """
    hex_ref = ref.strip().lower().replace("-", "")
    if not hex_ref or not HEX_RE.match(hex_ref):
        why = (
            f"{ref!r} is not a revision id: use the full id or at least {MIN_PREFIX} of its "
            "hex characters"
        )
    elif len(hex_ref) < MIN_PREFIX:
        why = f"revision prefix {ref!r} is too short: give at least {MIN_PREFIX} hex characters"
    elif len(hex_ref) > 32:
        why = f"{ref!r} is longer than a revision id"
    else:
        return hex_ref, None
    return None, why


def role_allows(role: str | None, needed: str) -> bool:
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


def role_refusal(role: str | None, needed: str) -> str | None:
    """The API's 403 message when `role` is below `needed`, or None if it is not."""
    if role_allows(role, needed):
        return None
    return f"this needs the {needed} role; your role is {role}"


# Auth modes from narrowest to widest: who may call the app through the gateway.
AUTH_MODES = ("private", "shared", "public")


def auth_mode_refusal(current: str, requested: str, *, owner: bool, role: str | None) -> str | None:
    """Why this caller may not move an app from `current` to `requested`, or None.

    Widening (private → shared/public, shared → public) exposes the app to more callers,
    which only its owner (who created it) or an admin may decide; narrowing is always
    allowed, since it exposes nothing.
    """
    if AUTH_MODES.index(requested) <= AUTH_MODES.index(current):
        return None
    if owner or role == "admin":
        return None
    return f"only the app's owner or an admin may widen its auth mode from {current} to {requested}"
