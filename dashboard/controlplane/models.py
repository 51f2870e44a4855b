"""The control plane's state: apps (aliases), revisions, operations, API tokens and roles.

Two invariants of DESIGN.md section 6 are held by the database itself, so no code path
can break them: App.current_revision is PROTECTed (the Current revision cannot be
deleted), and at most one unfinished operation may exist per app (mutations serialise),
not counting one whose cancellation was requested: it may still be winding down (its
executor stops at its next safe point), but it can no longer change the alias, so the
operation that superseded it may start at once.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid

from django.conf import settings as conf
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from dashboard.controlplane.rules import APP_NAME_RE, APP_NAME_RULE, ROLES

app_name_validator = RegexValidator(APP_NAME_RE, f"App names are {APP_NAME_RULE}.")


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    DEPLOYER = "deployer", "Deployer"
    ADMIN = "admin", "Admin"


def role_of(user) -> Role | None:
    """A user's role: superusers are admins; anonymous and inactive users have none."""
    if not user or not user.is_authenticated or not user.is_active:
        return None
    if user.is_superuser:
        return Role.ADMIN
    profile = getattr(user, "switchboard_profile", None)
    return Role(profile.role) if profile else Role.VIEWER


class Profile(models.Model):
    user = models.OneToOneField(
        conf.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="switchboard_profile"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)

    def __str__(self) -> str:
        return f"{self.user} ({self.role})"


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    """A secret for the CLI and scripts. Only its SHA-256 is stored; the raw value is shown once."""

    PREFIX = "sbt_"

    user = models.ForeignKey(
        conf.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    role = models.CharField(max_length=16, choices=Role.choices)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    hint = models.CharField(
        max_length=16, editable=False, help_text="First characters, to tell tokens apart."
    )
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.hint}…, {self.role})"

    @classmethod
    def issue(cls, user, name: str, role: Role | str) -> tuple[ApiToken, str]:
        raw = cls.PREFIX + secrets.token_urlsafe(32)
        token = cls.objects.create(
            user=user, name=name, role=role, token_hash=hash_token(raw), hint=raw[:12]
        )
        return token, raw

    @property
    def effective_role(self) -> Role | None:
        """A token never grants more than its user currently holds."""
        user_role = role_of(self.user)
        if user_role is None or self.revoked_at:
            return None
        return min(Role(self.role), user_role, key=ROLES.index)


class AuthMode(models.TextChoices):
    PRIVATE = "private", "Private (owner and admins)"
    SHARED = "shared", "Shared (any token of this installation)"
    PUBLIC = "public", "Public (anyone)"


class Network(models.TextChoices):
    """An app's outbound network in the runner sandbox (dashboard/runtime/sandboxed.py)."""

    OFF = "off", "off"
    OUTBOUND = "outbound", "outbound"


class App(models.Model):
    """A named service. Its name is the alias; current_revision is where the alias points."""

    name = models.CharField(max_length=63, unique=True, validators=[app_name_validator])
    current_revision = models.ForeignKey(
        "Revision", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    auth_mode = models.CharField(max_length=16, choices=AuthMode.choices, default=AuthMode.PRIVATE)
    # The live settings on the alias: runtime-tunables plus the current code-specific values.
    settings = models.JSONField(default=dict)
    # Code-specific names changed by scale since the last deploy/set-rev (reset by the next one).
    scale_overrides = models.JSONField(default=list, blank=True)
    owner = models.ForeignKey(
        conf.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    # Counts alias switches (executors.move_alias, under this row's lock). A switch is
    # announced to the runtime with the app's new state and this number, which lets the
    # runtime route by the message without reading the database and tell a message that
    # arrived late (after a later switch) from a new one.
    generation = models.PositiveBigIntegerField(default=0, editable=False)
    # Kept by executors.move_alias with every alias move: the revision that was Current
    # just before (the one-click way back), when Current became Current and the operation
    # that made it so (who, why, deploy or set-rev).
    previous_revision = models.ForeignKey(
        "Revision", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    current_since = models.DateTimeField(null=True, blank=True)
    current_operation = models.ForeignKey(
        "Operation", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # A rollback holds the app (when hold_on_rollback is on): deploys then create Deployed
    # revisions that do not become Current until the hold is released or a deploy asks to
    # promote. held_operation is the rollback that set the hold (who, when, why).
    hold_on_rollback = models.BooleanField(default=True)
    held = models.BooleanField(default=False)
    held_at = models.DateTimeField(null=True, blank=True)
    held_operation = models.ForeignKey(
        "Operation", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Retention (controlplane/retention.py): keep the newest retention_keep revisions and
    # delete older ones after each deploy and periodically, never a protected one.
    retention_keep = models.PositiveIntegerField(
        default=20, validators=[MinValueValidator(1), MaxValueValidator(1000)]
    )
    retention_enabled = models.BooleanField(default=True)
    # Whether its runners may open outbound connections (never to the host's loopback);
    # only an admin changes it, as it widens what the app's code can reach.
    network = models.CharField(max_length=16, choices=Network.choices, default=Network.OFF)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class RevisionStatus(models.TextChoices):
    DEPLOYING = "deploying", "Deploying"
    DEPLOYED = "deployed", "Deployed"
    FAILED = "failed", "Failed"
    SUSPENDED = "suspended", "Suspended"


def short_id(revision_id: uuid.UUID) -> str:
    """A revision's short id (its id's first 8 hex digits), from the id alone: callers
    holding only a foreign key need not load the row."""
    return revision_id.hex[:8]


class Revision(models.Model):
    """An immutable snapshot of an app's code and the settings it was deployed with."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="revisions")
    status = models.CharField(
        max_length=16, choices=RevisionStatus.choices, default=RevisionStatus.DEPLOYING
    )
    entrypoint = models.CharField(
        max_length=300, help_text="path/to/file.py::ClassName inside the bundle"
    )
    bundle_sha256 = models.CharField(max_length=64)
    bundle_size = models.PositiveBigIntegerField()
    # What the code declares (all ten parameters, defaults filled in), known after the import check.
    code_settings = models.JSONField(default=dict, blank=True)
    # What this revision was deployed with (list-rev shows these).
    settings = models.JSONField(default=dict, blank=True)
    endpoints = models.JSONField(default=list, blank=True)
    message = models.TextField(blank=True)
    annotations = models.JSONField(default=dict, blank=True)
    deployed_by = models.ForeignKey(
        conf.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    deployed_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    log_tail = models.TextField(blank=True)
    # A pinned revision is kept from retention and refused by delete-rev (DESIGN §1, §6.7).
    pinned = models.BooleanField(default=False)
    pinned_by = models.ForeignKey(
        conf.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    pinned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["app", "-created_at", "-id"], name="revision_app_newest"),
            models.Index(
                fields=["app", "status", "-created_at"], name="revision_app_status_newest"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.app_id}:{self.short_id}"

    @property
    def short_id(self) -> str:
        return short_id(self.id)

    @property
    def bundle_dir(self):
        return self.bundle_dir_of(self.id)

    @staticmethod
    def bundle_dir_of(revision_id: uuid.UUID | str):
        return conf.VAR_DIR / "bundles" / str(revision_id)


class OperationKind(models.TextChoices):
    DEPLOY = "deploy", "deploy"
    SET_REV = "set_rev", "set-rev"
    ROLLOUT = "rollout", "rollout"
    DELETE_REV = "delete_rev", "delete-rev"
    SCALE = "scale", "scale"
    SUSPEND = "suspend", "suspend"
    RESUME = "resume", "resume"
    RUNNER_STOP = "runner_stop", "runner stop"
    RUNNER_KILL = "runner_kill", "runner kill"
    RELEASE = "release", "release"
    HOLD_POLICY = "hold_policy", "hold policy"
    PIN = "pin", "pin"
    UNPIN = "unpin", "unpin"
    RETENTION = "retention", "retention"
    NETWORK = "network", "network"


class OperationState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class Source(models.TextChoices):
    CLI = "cli", "cli"
    DASHBOARD = "dashboard", "dashboard"
    API = "api", "api"
    # Deletions that retention decides on its own (no person asked for each one).
    RETENTION = "retention", "retention"


class Operation(models.Model):
    """One requested change: who, when, why, parameters, timestamped steps and outcome."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="operations")
    kind = models.CharField(max_length=16, choices=OperationKind.choices)
    state = models.CharField(
        max_length=16, choices=OperationState.choices, default=OperationState.QUEUED
    )
    requester = models.ForeignKey(
        conf.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requester_name = models.CharField(max_length=150, blank=True)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.API)
    reason = models.TextField(blank=True)
    params = models.JSONField(default=dict, blank=True)
    revision = models.ForeignKey(
        Revision, null=True, blank=True, on_delete=models.SET_NULL, related_name="operations"
    )
    idempotency_key = models.CharField(max_length=200, blank=True)
    # SHA-256 of the caller, method, path and body the key was first sent with: the key
    # replays that request only (api.body.fingerprint).
    request_hash = models.CharField(max_length=64, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)
    # The executor holding this operation renews its lease; a lapsed lease means its
    # process died and the sweeper hands the operation to another worker.
    lease_until = models.DateTimeField(null=True, blank=True)
    # host:pid:start time of the process holding the lease (operations.this_process).
    lease_holder = models.CharField(max_length=200, blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    # Set when someone cancels the operation or a set-rev supersedes it; its executor
    # ends it `cancelled` at its next safe point (operations.renew raises Cancelled).
    # cancel_reason is the whole sentence, e.g. "superseded by ada's rollback to 1a2b3c4d".
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_by = models.ForeignKey(
        conf.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    cancel_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["app", "-created_at"], name="operation_app_newest")]
        constraints = [
            models.UniqueConstraint(
                fields=["app"],
                condition=Q(finished_at__isnull=True, cancel_requested_at__isnull=True),
                name="one_active_operation_per_app",
            ),
            models.UniqueConstraint(
                fields=["requester", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="unique_idempotency_key_per_requester",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.app_id} ({self.state})"

    @property
    def subject(self) -> str:
        """What the operation acts on, as people name it: the runner's id for runner
        operations, else the revision's short id (kept in params once it is deleted)."""
        if self.kind in (OperationKind.RUNNER_STOP, OperationKind.RUNNER_KILL):
            return self.params.get("runner", "")
        revision_id = self.revision_id or self.params.get("revision")
        return short_id(uuid.UUID(str(revision_id))) if revision_id else ""

    @property
    def is_finished(self) -> bool:
        return self.finished_at is not None

    @property
    def duration(self):
        if self.started_at is None:
            return None
        return (self.finished_at or timezone.now()) - self.started_at


class OperationStep(models.Model):
    operation = models.ForeignKey(Operation, on_delete=models.CASCADE, related_name="steps")
    at = models.DateTimeField(default=timezone.now)
    message = models.TextField()

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return self.message
