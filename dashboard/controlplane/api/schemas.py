"""The control API's request and response shapes, declared once as pydantic models.

The views declare which of these each method takes and answers (`api_view(body=...,
responses=...)`), the OpenAPI document is generated from those declarations
(api/contract.py), and the typed client and the CLI read answers by these names. No Django
import here: the CLI may import this module (import-linter keeps it Django-free).

Why pydantic models on our own `api_view` rather than django-ninja's router: django-ninja
(1.5.1 and later, including 1.7) supports Django 6 and installs cleanly, but its router owns
method dispatch and body parsing: a wrong method gets its plain-text 405 before any
authentication, and a bad body its own 422 shape before our role check. The API's contract
(401 before 405, JSON 405 with Allow, the role per method on one URL, the JSON depth limit,
django-axes counting failed tokens, multipart deploys) and the webhooks API already go
through `api_view`; the schemas are the same pydantic models ninja would generate them from.

Value sets (statuses, kinds, states) are Literal types here; tests/controlplane/
test_openapi.py ties each to the model's choices, so they cannot drift apart.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from dashboard.controlplane.rules import MAX_PAGE_SIZE
from dashboard.runner_states import RunnerState

RevisionStatusValue = Literal["deploying", "deployed", "failed", "suspended"]
OperationKindValue = Literal[
    "deploy",
    "set_rev",
    "rollout",
    "delete_rev",
    "scale",
    "suspend",
    "resume",
    "runner_stop",
    "runner_kill",
    "release",
    "hold_policy",
    "pin",
    "unpin",
    "retention",
    "network",
]
OperationStateValue = Literal["queued", "running", "succeeded", "failed", "cancelled"]
SourceValue = Literal["cli", "dashboard", "api", "retention"]
AuthModeValue = Literal["private", "shared", "public"]
NetworkValue = Literal["off", "outbound"]
RoleValue = Literal["viewer", "deployer", "admin"]
Strategy = Literal["rolling", "recreate"]

Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
Uuid = Annotated[str, Field(json_schema_extra={"format": "uuid"})]
JsonObject = dict[str, Any]


class Answer(BaseModel):
    """An answer's shape: every field it sends is declared, and nothing else is sent."""

    model_config = ConfigDict(extra="forbid")


# -- errors ---------------------------------------------------------------------------


class ErrorBody(Answer):
    code: str
    message: str
    details: JsonObject


class Error(Answer):
    """Every 4xx and 5xx of the API."""

    error: ErrorBody


# -- revisions, operations, apps --------------------------------------------------------


class RevisionRef(Answer):
    id: Uuid
    short_id: str


class Revision(Answer):
    id: Uuid
    short_id: str
    app: str
    status: RevisionStatusValue
    current: bool
    created_at: Timestamp
    deployed_at: Timestamp | None
    message: str
    annotations: dict[str, str]
    deployed_by: str | None
    machine_type: str | None
    settings: JsonObject
    code_settings: JsonObject
    entrypoint: str
    error: str
    log_tail: str
    endpoints: list[str]
    pinned: bool
    pinned_by: str | None
    pinned_at: Timestamp | None


class Step(Answer):
    at: Timestamp
    message: str


class CancelRequest(Answer):
    requested_at: Timestamp
    reason: str


class Operation(Answer):
    id: Uuid
    app: str
    kind: OperationKindValue
    state: OperationStateValue
    requester: str
    source: SourceValue
    reason: str
    params: JsonObject
    revision: str | None
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
    duration_ms: int | None
    error: str
    result: JsonObject
    cancel: CancelRequest | None = Field(
        description="Set once a cancel was requested (by someone, or by a set-rev "
        "superseding it): when and the whole reason."
    )
    steps: list[Step] = Field(
        default_factory=list, description="Absent where operations are listed inside an app."
    )


class AliasMove(Answer):
    operation: Uuid
    kind: OperationKindValue
    by: str
    source: SourceValue
    reason: str
    at: Timestamp


class Hold(Answer):
    since: Timestamp | None
    by: str | None
    reason: str
    operation: Uuid | None
    revision: RevisionRef | None


class RetentionSettings(Answer):
    keep: Annotated[int, Field(ge=1, le=1000)]
    enabled: bool


class RevisionTraffic(Answer):
    revision: Uuid
    short_id: str
    requests: int
    errors_5xx: int
    error_rate: float = Field(description="errors_5xx ÷ requests; 0 without requests.")
    p50_ms: float | None
    p99_ms: float | None
    window_s: int
    text: str


class RunnerCounts(Answer):
    ready: int
    busy: int
    starting: int
    failing: int
    scaled_to_zero: bool
    text: str


class Health(Answer):
    """Is Current serving well? Figures over the last window_s seconds."""

    status: Literal["available", "unavailable", "no current revision"]
    message: str
    window_s: int
    current: RevisionTraffic | None
    previous: RevisionTraffic | None
    runners: RunnerCounts | None
    summary: str


class Parameter(Answer):
    name: str
    kind: str
    default: Any
    allowed: str = Field(examples=["0–86400", "one of XS, S, M, L"])
    minimum: int | None
    maximum: int | None
    unit: str
    help: str


class App(Answer):
    name: str
    status: Literal["serving", "suspended", "no current revision"]
    current_revision: Revision | None
    auth_mode: AuthModeValue
    owner: str | None
    settings: JsonObject
    scale_overrides: list[str]
    created_at: Timestamp
    updated_at: Timestamp
    last_operation: Operation | None
    previous_revision: RevisionRef | None
    current_since: Timestamp | None
    current_set_by: AliasMove | None
    hold_on_rollback: bool
    held: bool
    network: NetworkValue
    hold: Hold | None
    retention: RetentionSettings


class AppListed(App):
    health: Health


class AppDetail(App):
    health: Health
    revision_count: int
    parameters: list[Parameter]


class AppList(Answer):
    apps: list[AppListed]


class AppHealth(Health):
    app: str


class Page(Answer):
    count: int
    page: int
    page_size: int
    next: int | None


class RevisionPage(Page):
    revisions: list[Revision]


class OperationPage(Page):
    operations: list[Operation]


class Me(Answer):
    username: str
    email: str
    role: RoleValue
    source: SourceValue


class Index(Answer):
    name: str
    version: str
    openapi: str


# -- runners ------------------------------------------------------------------------------


class Runner(Answer):
    model_config = ConfigDict(extra="allow")  # A backend may add what it knows.

    id: str
    app: str
    revision: str
    state: RunnerState
    in_flight: int
    pid: int | None
    started_at: Timestamp | None
    ready_at: Timestamp | None
    idle_since: Timestamp | None
    idle_shutdown_at: Timestamp | None
    ended_at: Timestamp | None
    restarts: int
    crash_looping: bool
    error: str
    machine_type: str | None
    # A backend that spreads runners over a cluster (Ray: one runner per Serve replica).
    node: str | None = Field(default=None, description="The address of the node it runs on.")
    node_id: str | None = None
    replica: str | None = Field(default=None, description="Ray Serve's id of the replica.")
    ray_state: str | None = Field(default=None, description="Ray Serve's own replica state.")
    log_file: str | None = Field(default=None, description="Its log file on its node.")


class RunnerList(Answer):
    runners: list[Runner]


# -- answers of mutations ---------------------------------------------------------------


class OperationAnswer(Answer):
    """202 while the operation runs, 200 once it finished (quick ones, and replays)."""

    operation: Operation
    replayed: bool = Field(
        default=False,
        description="Present (true) when this answers a repeated Idempotency-Key: the "
        "original operation, nothing applied twice.",
    )


class DeployAnswer(OperationAnswer):
    revision: Revision | None = None


class RevisionAnswer(OperationAnswer):
    """Pin, unpin, suspend, resume: the operation and the revision as it is now (absent
    on a replay)."""

    revision: Revision | None = None


class ScaleAnswer(OperationAnswer):
    settings: JsonObject | None = None
    notes: list[str] | None = None


class AppAnswer(OperationAnswer):
    app: App | None = None


class RetentionAnswer(OperationAnswer):
    retention: RetentionSettings | None = None


class RetentionVerdict(Answer):
    revision: Uuid
    short_id: str
    status: RevisionStatusValue
    created_at: Timestamp
    pinned: bool
    why: str


class RetentionPlan(Answer):
    """What retention would delete (a dry run), and why each other revision stays."""

    keep: int
    enabled: bool
    would_delete: list[RetentionVerdict] = Field(description="Oldest first.")
    kept: list[RetentionVerdict] = Field(description="Newest first, each with why it stays.")


class SettingRow(Answer):
    name: str
    kind: Literal["runtime-tunable", "code-specific"]
    unit: str
    a: Any
    b: Any
    changed: bool


class FileChange(Answer):
    path: str
    change: Literal["added", "removed", "changed"]
    size_a: int | None
    size_b: int | None
    diff: str | None
    skipped: str


class FileChanges(Answer):
    available: bool
    message: str
    entries: list[FileChange]
    counts: dict[str, int]


class DiffBody(Answer):
    """What changed between two sides (revisions, or Current and a bundle to deploy)."""

    a: JsonObject
    b: JsonObject
    fields: list[JsonObject]
    annotations: list[JsonObject]
    settings: list[SettingRow]
    files: FileChanges
    limits: dict[str, int]


class Diff(DiffBody):
    """What changed from revision a to revision b of the app."""

    app: str


class PreviewSetting(Answer):
    name: str
    kind: str
    unit: str
    value: Any
    code: Any
    current: Any
    source: Literal["code", "default", "previous_current"]


class BundleSummary(Answer):
    sha256: str
    size: int
    files: int


class DeployPreview(Answer):
    app: str
    app_exists: bool
    entrypoint: str
    endpoints: list[str]
    strategy: Strategy
    reset_scale: bool
    bundle: BundleSummary
    settings: list[PreviewSetting]
    current: Uuid | None
    diff: DiffBody | None


class RetentionRead(RootModel[RetentionSettings | RetentionPlan]):
    """The settings; with ?dry_run=1, what they would delete."""


class RetentionChange(RootModel[RetentionAnswer | RetentionPlan]):
    """The retention operation and the settings now; with dry_run, what they would delete."""


class Document(BaseModel):
    """This document (OpenAPI 3.1)."""

    model_config = ConfigDict(extra="allow")

    openapi: str
    info: JsonObject
    paths: JsonObject


# -- webhooks ----------------------------------------------------------------------------


FINAL_STATES = ("succeeded", "failed", "cancelled")


class WebhookEvent(
    RootModel[
        Literal[
            tuple(  # type: ignore[misc]
                [
                    f"{kind}.{state}"
                    for kind in get_args(OperationKindValue)
                    for state in FINAL_STATES
                ]
                + ["test"]
            )
        ]
    ]
):
    """`<operation kind>.<final state>`, or `test`."""


class Webhook(Answer):
    id: int
    url: str
    app: str | None
    events: list[WebhookEvent]
    format: Literal["json", "slack"]
    description: str
    secret_hint: str
    created_by: str | None
    created_at: Timestamp


class WebhookCreated(Answer):
    webhook: Webhook
    secret: str


class WebhookList(Answer):
    webhooks: list[Webhook]


class WebhookDeleted(Answer):
    deleted: Webhook


class WebhookDelivery(Answer):
    id: Uuid
    webhook: int
    event: WebhookEvent
    operation: Uuid | None
    status: Literal["pending", "retrying", "succeeded", "failed"]
    attempts: int
    response_code: int | None
    error: str
    created_at: Timestamp
    last_attempt_at: Timestamp | None
    next_attempt_at: Timestamp | None
    finished_at: Timestamp | None


class DeliveryPage(Page):
    deliveries: list[WebhookDelivery]


class DeliveryAnswer(Answer):
    delivery: WebhookDelivery


# -- request bodies -------------------------------------------------------------------------
#
# Each body refuses a field it does not declare (400 unknown_field, in api_view) and a value
# of the wrong type (400 with the field's rule, below). Domain rules that need the database or
# the parameter catalogue (a revision prefix, `keep`'s range, scale values) are checked by the
# code that owns them, after this.


def _refuse(field: str, rule: str, value: object) -> PydanticCustomError:
    return PydanticCustomError("invalid_value", f"{field} must be {rule}, got {value!r}")


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off", "")


def as_bool(field: str, value: object) -> bool:
    """true/false, or the words a form sends ("on", "yes", "1"...); None is false."""
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, str) and value.lower() in (*_TRUE, *_FALSE):
        return value.lower() in _TRUE
    raise _refuse(field, "true or false", value)


def _flag(value: object, info: ValidationInfo) -> bool:
    return as_bool(info.field_name or "value", value)


def _text(limit: int) -> Any:
    def check(value: object, info: ValidationInfo) -> str:
        if value is None:
            return ""
        if not isinstance(value, str):
            raise PydanticCustomError("invalid_value", f"{info.field_name} must be a string")
        if len(value) > limit:
            raise PydanticCustomError(
                "invalid_value", f"{info.field_name} is longer than {limit} characters"
            )
        return value

    return BeforeValidator(check)


Flag = Annotated[bool, BeforeValidator(_flag)]
Reason = Annotated[
    str, _text(5000), Field(max_length=5000, description="Recorded on the operation.")
]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The answer when a required field is missing, by field (else "<field> is required").
    missing: ClassVar[dict[str, str]] = {}


RevisionRefText = Annotated[
    str,
    _text(200),
    Field(
        max_length=200,
        description="A full revision id or a unique prefix of at least 8 hex characters.",
    ),
]
ExpectedCurrent = Annotated[
    str | None,
    _text(200),
    Field(
        description="Refuse (409 current_changed) unless this revision (full id or prefix) is "
        "still Current.",
    ),
]


class SetRevBody(Body):
    missing: ClassVar[dict[str, str]] = {
        "revision": "revision is required: a full id or a unique prefix of 8+ characters"
    }

    revision: RevisionRefText
    strategy: Strategy = "rolling"
    reason: Reason = ""
    expected_current: ExpectedCurrent = None

    @field_validator("strategy", mode="before")
    @classmethod
    def _strategy(cls, value: object) -> object:
        if value in (None, ""):
            return "rolling"
        if value not in ("rolling", "recreate"):
            raise _refuse("strategy", "rolling or recreate", value)
        return value


class RolloutBody(Body):
    force: Flag = False
    reason: Reason = ""
    expected_current: ExpectedCurrent = None


class DeleteRevisionBody(Body):
    reason: Reason = ""
    expected_current: ExpectedCurrent = None


class SuspendBody(Body):
    revision: RevisionRefText | None = Field(
        default=None, description="Default: the app's Current revision."
    )
    reason: Reason = ""
    expected_current: ExpectedCurrent = None


class ReasonBody(Body):
    reason: Reason = ""


class RunnerStopBody(Body):
    replace: Flag = Field(default=False, description="Start a replacement first.")
    reason: Reason = ""


class HoldPolicyBody(Body):
    missing: ClassVar[dict[str, str]] = {
        "hold_on_rollback": "nothing to change: give hold_on_rollback (true or false)"
    }

    hold_on_rollback: Flag
    reason: Reason = ""


class NetworkBody(Body):
    missing: ClassVar[dict[str, str]] = {
        "network": "nothing to change: give network (off, outbound)"
    }

    network: NetworkValue
    reason: Reason = ""

    @field_validator("network", mode="before")
    @classmethod
    def _network(cls, value: object) -> object:
        if value not in ("off", "outbound"):
            raise _refuse("network", "one of off, outbound", value)
        return value


class RetentionBody(Body):
    keep: Annotated[int | None, Field(ge=1, le=1000)] = None
    enabled: bool | None = None
    reason: Reason = ""
    dry_run: Flag = Field(default=False, description="Answer what would go; change nothing.")

    @field_validator("keep", mode="plain")
    @classmethod
    def _keep(cls, value: object) -> object:
        return value  # Its range and its words are retention.check_keep's.

    @field_validator("enabled", mode="before")
    @classmethod
    def _enabled(cls, value: object) -> object:
        if value is not None and not isinstance(value, bool):
            raise _refuse("enabled", "true or false", value)
        return value


class ScaleBody(Body):
    """The runtime-tunable parameters (see `parameters` in GET /apps/{app}); their ranges
    and coercions are the parameter catalogue's (sdk/parameters.py, controlplane/parameters.py)."""

    model_config = ConfigDict(extra="allow")

    reason: Reason = ""


class WebhookBody(Body):
    missing: ClassVar[dict[str, str]] = {
        "url": "url is required: the http:// or https:// address to deliver to"
    }

    url: Annotated[str, Field(max_length=2000)]
    app: str | None = None
    events: list[str] | None = None
    format: Literal["json", "slack"] = "json"
    description: Annotated[str, Field(max_length=5000)] = ""

    @field_validator("*", mode="plain")
    @classmethod
    def _as_sent(cls, value: object) -> object:
        return value  # webhooks/endpoints.py checks each, in its own words.


class DeployFields(Body):
    """The deploy form's fields besides the bundle (a preview takes the same)."""

    missing: ClassVar[dict[str, str]] = {"entrypoint": "entrypoint is required, e.g. app.py::MyApp"}

    entrypoint: Annotated[str, _text(300), Field(max_length=300, examples=["app.py::MyApp"])]
    strategy: Strategy = "rolling"
    reset_scale: Flag = False
    promote: Flag = Field(default=False, description="Make it Current even while held.")
    message: Annotated[str, _text(5000), Field(max_length=5000)] = ""
    annotations: str = Field(
        default="", description="A JSON object mapping strings to strings (at most 50)."
    )
    auth_mode: AuthModeValue | None = None

    @field_validator("entrypoint")
    @classmethod
    def _entrypoint(cls, value: str) -> str:
        if not value:
            raise PydanticCustomError("invalid_value", cls.missing["entrypoint"])
        return value

    @field_validator("strategy", mode="before")
    @classmethod
    def _strategy(cls, value: object) -> object:
        return SetRevBody._strategy(value)

    @field_validator("auth_mode", mode="before")
    @classmethod
    def _auth_mode(cls, value: object) -> object:
        if value in (None, ""):
            return None
        if value not in get_args(AuthModeValue):
            raise _refuse("auth_mode", "one of " + ", ".join(get_args(AuthModeValue)), value)
        return value


class DeployForm(DeployFields):
    """multipart/form-data: the tar.gz bundle and the deploy's fields."""

    bundle: bytes = Field(json_schema_extra={"format": "binary"}, description="The tar.gz bundle.")


# -- query strings ---------------------------------------------------------------------------


class Query(BaseModel):
    # A parameter a listing does not know is left alone (clients add their own, e.g. a
    # cache-buster); the routes whose parameters are few and exact refuse it (Strict).
    model_config = ConfigDict(extra="ignore")


class StrictQuery(Query):
    model_config = ConfigDict(extra="forbid")


class PageQuery(Query):
    page: Annotated[int, Field(ge=1, le=10**6)] = 1
    page_size: Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE)] = 50


class RevisionQuery(PageQuery):
    status: RevisionStatusValue | None = None

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, value: object) -> object:
        return value.strip().lower() or None if isinstance(value, str) else value


class LogsQuery(Query):
    tail: Annotated[int, Field(ge=1, le=10000)] = 200
    revision: str | None = Field(default=None, description="A revision's id or prefix.")
    runner: str | None = Field(default=None, description="One runner's id (without revision).")


class DiffQuery(StrictQuery):
    a: Annotated[str, Field(min_length=1, description="A revision's id or prefix of 8+.")]
    b: Annotated[str, Field(min_length=1, description="A revision's id or prefix of 8+.")]


class RetentionQuery(StrictQuery):
    dry_run: Flag = Field(default=False, description="Add what would go and why the rest stays.")
