"""Every table of the dashboard. Columns are declarative; cells that need markup use
small templates under templates/web/cells/. Nothing here queries the database per row:
the views hand over querysets with select_related/prefetch_related already applied."""

from __future__ import annotations

import django_tables2 as tables

from dashboard.controlplane.models import App, Operation, Revision

CELLS = "web/cells/"


class AppsTable(tables.Table):
    name = tables.TemplateColumn(template_name=CELLS + "app_name.html", verbose_name="App")
    current = tables.TemplateColumn(
        template_name=CELLS + "app_current.html", verbose_name="Current revision", empty_values=()
    )
    status = tables.TemplateColumn(
        template_name=CELLS + "app_status.html", verbose_name="Status", empty_values=()
    )
    runners = tables.TemplateColumn(
        template_name=CELLS + "app_runners.html", verbose_name="Runners", empty_values=()
    )
    last_operation = tables.TemplateColumn(
        template_name=CELLS + "app_last_op.html", verbose_name="Last operation", empty_values=()
    )

    class Meta:
        model = App
        fields = ("name",)
        sequence = ("name", "current", "status", "runners", "last_operation")
        orderable = False
        template_name = "django_tables2/table.html"
        attrs = {"class": "table", "data-testid": "apps-table"}
        row_attrs = {
            "data-app": lambda record: record.name,
            "data-suspended": lambda record: str(record.is_suspended).lower(),
        }


def _labelled(table_cls: type[tables.Table]) -> type[tables.Table]:
    """Give every cell a data-label with its column's name, so that on a phone the CSS
    can show each row as a card of "label: value" lines instead of a wide table."""
    for name, column in table_cls.base_columns.items():
        label = str(column.verbose_name or name.replace("_", " ").capitalize())
        column.attrs = {**(column.attrs or {}), "td": {"data-label": label}}
    return table_cls


@_labelled
class VersionsTable(tables.Table):
    revision = tables.TemplateColumn(
        template_name=CELLS + "rev_id.html", verbose_name="Revision", empty_values=()
    )
    status = tables.TemplateColumn(template_name=CELLS + "rev_status.html", verbose_name="Status")
    message = tables.TemplateColumn(
        template_name=CELLS + "rev_message.html", verbose_name="Message", empty_values=()
    )
    deployed_by = tables.Column(accessor="deployed_by__username", verbose_name="Deployed by")
    created_at = tables.TemplateColumn(
        "{% load switchboard %}{% when value %}", verbose_name="Created"
    )
    settings = tables.TemplateColumn(
        template_name=CELLS + "rev_settings.html", verbose_name="Machine & scaling", empty_values=()
    )
    actions = tables.TemplateColumn(
        template_name=CELLS + "rev_actions.html", verbose_name="Actions", empty_values=()
    )

    class Meta:
        model = Revision
        fields = ("status", "deployed_by", "created_at")
        sequence = (
            "revision",
            "status",
            "message",
            "deployed_by",
            "created_at",
            "settings",
            "actions",
        )
        orderable = False
        attrs = {"class": "table versions", "data-testid": "versions-table"}
        row_attrs = {
            "data-testid": "revision-row",
            "data-revision": lambda record: record.short_id,
            "data-status": lambda record: record.status,
            "data-current": lambda record, table: str(record.id == table.current_id).lower(),
        }

    def __init__(self, *args, app: App, role, **kwargs):
        super().__init__(*args, **kwargs)
        self.app = app
        self.current_id = app.current_revision_id
        self.role = role


class HistoryTable(tables.Table):
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
        attrs = {"class": "table", "data-testid": "history-table"}
        row_attrs = {"data-testid": "operation-row", "data-state": lambda record: record.state}

    def render_kind(self, record: Operation) -> str:
        return record.get_kind_display()


class RunnersTable(tables.Table):
    id = tables.Column(verbose_name="Runner")
    state = tables.TemplateColumn(template_name=CELLS + "runner_state.html", verbose_name="State")
    short_revision = tables.Column(verbose_name="Revision")
    in_flight = tables.Column(verbose_name="In flight", default=0)
    uptime = tables.TemplateColumn(
        "{% load switchboard %}{{ value|seconds }}", verbose_name="Uptime", empty_values=()
    )
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
        attrs = {"class": "table", "data-testid": "runners-table"}
        row_attrs = {
            "data-testid": "runner-row",
            "data-runner": lambda record: record["id"],
            "data-state": lambda record: record["state"],
        }
        empty_text = "No runners: the next request cold-starts one."

    def __init__(self, *args, app: App, role, **kwargs):
        super().__init__(*args, **kwargs)
        self.app = app
        self.role = role
