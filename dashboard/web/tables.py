"""Every table of the dashboard. Columns are declarative; cells that need markup use
small templates (templates/web/cells/, or the partials of the table's own template).
Nothing here queries the database per row: the views hand over querysets with
select_related/prefetch_related already applied."""

from __future__ import annotations

import django_tables2 as tables
from django.conf import settings
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from dashboard.controlplane.models import (
    App,
    Operation,
    Revision,
    RevisionStatus,
    Role,
    short_id,
)
from dashboard.controlplane.rules import role_allows
from dashboard.runner_states import node_label
from dashboard.web.actions import current_story, revision_refusal, switch_word
from dashboard.web.templatetags.switchboard import seconds

CELLS = "web/cells/"


def _labelled(table_cls: type[tables.Table]) -> type[tables.Table]:
    """Give every cell a data-label with its column's name, so that on a phone the CSS
    can show each row as a card of "label: value" lines instead of a wide table."""
    for name, column in table_cls.base_columns.items():
        label = str(column.verbose_name or name.replace("_", " ").capitalize())
        attrs = column.attrs or {}
        column.attrs = {**attrs, "td": {**attrs.get("td", {}), "data-label": label}}
    return table_cls


class PagedTable(tables.Table):
    """A table whose page size a visitor can pick (django-tables2 honours ?per_page=N), but
    only up to MAX_PER_PAGE rows: one request must not render a whole 10,000-revision
    history."""

    MAX_PER_PAGE = 100

    def paginate(self, *args, per_page: int | None = None, **kwargs):
        if per_page is not None:
            per_page = min(max(1, per_page), self.MAX_PER_PAGE)
        return super().paginate(*args, per_page=per_page, **kwargs)


@_labelled
class AppsTable(PagedTable):
    name = tables.TemplateColumn(template_name=CELLS + "app_name.html", verbose_name="App")
    current = tables.TemplateColumn(
        template_name=CELLS + "app_current.html", verbose_name="Current revision", empty_values=()
    )
    status = tables.TemplateColumn(
        template_name=CELLS + "app_status.html", verbose_name="Status", empty_values=()
    )
    # Only the Current revision's runners are counted (runners.AppRunners says why), and
    # the header says so.
    runners = tables.TemplateColumn(
        template_name=CELLS + "app_runners.html",
        verbose_name="Runners (Current)",
        empty_values=(),
    )
    last_operation = tables.TemplateColumn(
        template_name=CELLS + "app_last_op.html", verbose_name="Last operation", empty_values=()
    )
    # Current's requests, 5xx and p50/p99 over the last 5 minutes and what its runners do
    # (controlplane/health.py); the view sets record.health. Not in Meta.sequence, so it
    # comes last.
    health = tables.TemplateColumn(
        template_name="web/health.html#health-cell", verbose_name="Health (5 min)", empty_values=()
    )

    class Meta:
        model = App
        fields = ("name",)
        sequence = ("name", "current", "status", "runners", "last_operation")
        orderable = False
        template_name = "django_tables2/table.html"
        attrs = {"class": "table cards", "data-testid": "apps-table"}
        row_attrs = {
            "data-app": lambda record: record.name,
            "data-suspended": lambda record: str(record.is_suspended).lower(),
        }


def _versions_cell(name: str, verbose_name: str) -> tables.TemplateColumn:
    # Every cell is a partial of the table's template; `table` in it is this table.
    return tables.TemplateColumn(
        template_name=f"{VERSIONS_TEMPLATE}#{name}", verbose_name=verbose_name, empty_values=()
    )


VERSIONS_TEMPLATE = "web/versions_table.html"


@_labelled
class VersionsTable(PagedTable):
    """The Versions page: one row per revision, newest first, 25 to a page. Each cell is
    a partial of web/versions_table.html, auto-escaped (messages, annotations, errors and
    logs are user-written); the view prefetches what the cells read."""

    revision = _versions_cell("revision", "Revision")
    status = _versions_cell("status", "Status")
    message = _versions_cell("message", "Message")
    deployed_by = _versions_cell("deployed-by", "Deployed by")
    created_at = _versions_cell("created", "Created")
    settings = _versions_cell("settings", "Machine & scaling")
    revision_url = _versions_cell("revision-url", "Call & compare")
    actions = tables.Column(verbose_name="Actions", empty_values=())

    class Meta:
        model = Revision
        fields = ()
        sequence = (
            "revision",
            "status",
            "message",
            "deployed_by",
            "created_at",
            "settings",
            "revision_url",
            "actions",
        )
        orderable = False
        template_name = VERSIONS_TEMPLATE
        attrs = {"class": "table cards versions", "data-testid": "versions-table"}
        # The id lets "Jump to Current" scroll to the row, and morphing swaps match rows
        # by it, so a refresh keeps what is open and focused in each.
        row_attrs = {
            "id": lambda record: f"rev-{record.short_id}",
            "data-testid": "revision-row",
            "data-revision": lambda record: record.short_id,
            "data-status": lambda record: record.status,
            "data-current": lambda record, table: _true(record.id == table.current_id),
            "data-previous": lambda record, table: _true(record.id == table.previous_id),
        }

    def __init__(self, *args, app: App, role, **kwargs):
        if not role_allows(role, Role.DEPLOYER):
            kwargs["exclude"] = ("actions",)  # A viewer has no actions: no empty column.
        super().__init__(*args, **kwargs)
        self.app = app
        self.current_id = app.current_revision_id
        self.current_short_id = short_id(app.current_revision_id) if self.current_id else ""
        self.role = role
        self.can_deploy = role_allows(role, Role.DEPLOYER)
        self.can_admin = role_allows(role, Role.ADMIN)
        self._confirm_urls = {
            action: reverse("confirm", args=[app.name, action])
            for action in ("rollback", "resume", "suspend", "delete", "pin", "unpin")
        }
        self.compare_url = reverse("compare", args=[app.name])
        self.gateway = f"{settings.GATEWAY_URL.rstrip('/')}/{app.name}@"
        # Who made Current what it is, and the one before it (incident view, issue 10).
        self.previous_id = app.previous_revision_id
        self.story = current_story(app)

    def render_actions(self, record: Revision) -> str:
        # Older than Current: a rollback; newer: a roll forward ("Switch to").
        word = (
            "Roll back"
            if record.id == self.current_id
            else switch_word(self.app.current_revision, record)
        )
        buttons = [self._button(record, "rollback", word, "primary")]
        if record.pinned:
            buttons.append(self._button(record, "unpin", "Unpin"))
        else:
            buttons.append(self._button(record, "pin", "Pin"))
        if self.can_admin:
            if record.status == RevisionStatus.SUSPENDED:
                buttons.append(self._button(record, "resume", "Resume"))
            else:
                # Suspending Current takes the app down (503): a danger action.
                danger = "danger" if record.id == self.current_id else ""
                buttons.append(self._button(record, "suspend", "Suspend", danger))
            buttons.append(self._button(record, "delete", "Delete", "danger"))
        return mark_safe(  # Auto-escaped by the template.
            render_to_string(f"{VERSIONS_TEMPLATE}#actions", {"buttons": buttons})
        )

    def _button(self, record: Revision, action: str, label: str, style: str = "") -> dict:
        ref = record.short_id
        return {
            "action": action,
            "label": label,
            "why": revision_refusal(action, self.app, record) or "",
            "url": f"{self._confirm_urls[action]}?rev={ref}",
            "ref": ref,
            "style": style,
        }


def _true(value: bool) -> str:
    return "true" if value else "false"


@_labelled
class HistoryTable(PagedTable):
    kind = tables.Column(verbose_name="Operation")
    requester_name = tables.Column(verbose_name="Who", default="—")
    source = tables.Column(verbose_name="Source")
    created_at = tables.TemplateColumn(
        "{% load switchboard %}{% when value %}", verbose_name="When"
    )
    reason = tables.Column(verbose_name="Reason", default="—")
    params = tables.TemplateColumn(
        template_name=CELLS + "op_params.html", verbose_name="Parameters", empty_values=()
    )
    state = tables.TemplateColumn(template_name=CELLS + "op_outcome.html", verbose_name="Outcome")
    duration = tables.TemplateColumn(
        "{% load switchboard %}{{ record.duration|seconds }}",
        verbose_name="Duration",
        empty_values=(),
    )

    class Meta:
        model = Operation
        fields = ("kind", "requester_name", "source", "created_at", "reason", "state")
        sequence = (
            "kind",
            "requester_name",
            "source",
            "created_at",
            "reason",
            "params",
            "state",
            "duration",
        )
        orderable = False
        attrs = {"class": "table cards", "data-testid": "history-table"}
        row_attrs = {"data-testid": "operation-row", "data-state": lambda record: record.state}

    def render_kind(self, record: Operation) -> str:
        # The view puts each operation in words ("rollback to 1a2b3c4d from 5e6f7a8b").
        return getattr(record, "words", "") or record.get_kind_display()


@_labelled
class RunnersTable(tables.Table):
    # An id such as "r-e4cd0a20" must not break at its hyphen.
    id = tables.Column(verbose_name="Runner", attrs={"td": {"class": "ident"}})
    state = tables.TemplateColumn(template_name=CELLS + "runner_state.html", verbose_name="State")
    short_revision = tables.Column(verbose_name="Revision", attrs={"td": {"class": "ident"}})
    # Which machine runs it: only a backend that spreads runners over nodes (Ray) says.
    node = tables.Column(verbose_name="Node", default="—", attrs={"td": {"class": "ident"}})
    in_flight = tables.Column(verbose_name="In flight", default=0)
    uptime = tables.Column(verbose_name="Uptime", empty_values=())
    idle_left = tables.TemplateColumn(
        "{% load switchboard %}{% if value is None %}—{% else %}{{ value|seconds }}{% endif %}",
        verbose_name="Idle shutdown in",
        empty_values=(),
    )
    actions = tables.TemplateColumn(
        template_name=CELLS + "runner_actions.html", verbose_name="Actions", empty_values=()
    )

    class Meta:
        orderable = False
        attrs = {"class": "table cards", "data-testid": "runners-table"}
        row_attrs = {
            "data-testid": "runner-row",
            "data-runner": lambda record: record["id"],
            "data-state": lambda record: record["state"],
        }
        empty_text = "No runners: the next request cold-starts one."

    def __init__(self, data, *args, app: App, role, **kwargs):
        exclude = []
        if not role_allows(role, Role.DEPLOYER):
            exclude.append("actions")  # A viewer has no actions: no empty column.
        if not any(record.get("node") for record in data):
            exclude.append("node")  # One machine: a column of the same name says nothing.
        super().__init__(data, *args, exclude=exclude, **kwargs)
        self.app = app
        self.role = role

    def render_node(self, record: dict) -> str:
        return node_label(record) or "—"

    def render_uptime(self, record: dict) -> str:
        """How long a live runner has been up; how long a stopped one lived, if known."""
        if record.get("uptime") is not None:
            return seconds(record["uptime"])
        if record.get("lifetime") is not None:
            return format_html('<span class="muted">ran {}</span>', seconds(record["lifetime"]))
        return "—"
