"""The Versions table as it was built before: cells in Python with bench.handmade.markup's
own escaping. Kept only so that bench/run.py --only speedups compares it with the
template-rendered table in one run (BENCHMARKS.md, "Framework first")."""

from __future__ import annotations

from collections.abc import Iterator

import django_tables2 as tables
from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import mark_safe

from bench.handmade import markup
from bench.handmade.markup import CURRENT_BADGE, escape, format_html, format_html_join
from dashboard.controlplane.models import App, Operation, Revision, RevisionStatus, Role, short_id
from dashboard.controlplane.retention import pin_note
from dashboard.controlplane.rules import role_allows
from dashboard.web.actions import current_story, revision_refusal, switch_word
from dashboard.web.tables import PagedTable, _labelled

COPY_ICON = mark_safe(
    '<svg aria-hidden="true" width="14" height="14" viewBox="0 0 16 16" fill="none"'
    ' stroke="currentColor" stroke-width="1.5"><rect x="5" y="5" width="9" height="9" rx="1.5"/>'
    '<path d="M11 5V3.5A1.5 1.5 0 0 0 9.5 2h-6A1.5 1.5 0 0 0 2 3.5v6A1.5 1.5 0 0 0 3.5 11H5"/></svg>'
)


@_labelled
class VersionsTable(PagedTable):
    """The Versions page: one row per revision, newest first, 25 to a page.

    It must cost the same with 10 or 10,000 revisions, so what matters is the cost per
    rendered row. django-tables2's generic cell path costs ~3 ms per row here: it calls
    inspect.signature for every cell, recomputes each column's attrs per cell, and
    TemplateColumns render a sub-template (with includes and tags) per cell. So each
    column has a plain `render_<column>(record)` method building its markup with
    format_html (which escapes every argument: messages, annotations, errors and logs
    are user-written), and the table's template (web/versions_table.html) renders the
    page's rows from `page_rows()`, which calls those methods directly and joins each
    row into one string (~0.25 ms per row; a template loop over the cells alone cost
    ~0.1 ms per row). The columns
    stay declarative for the header, labels and pagination, and django-tables2's own
    rendering of this table would still produce the same cells.
    """

    revision = tables.Column(verbose_name="Revision", empty_values=())
    status = tables.Column(verbose_name="Status", empty_values=())
    message = tables.Column(verbose_name="Message", empty_values=())
    deployed_by = tables.Column(verbose_name="Deployed by", empty_values=())
    created_at = tables.Column(verbose_name="Created", empty_values=())
    settings = tables.Column(verbose_name="Machine & scaling", empty_values=())
    revision_url = tables.Column(verbose_name="Call & compare", empty_values=())
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
        template_name = "handmade/versions_table.html"  # bench/handmade/templates/
        attrs = {"class": "table cards versions", "data-testid": "versions-table"}

    def __init__(self, *args, app: App, role, **kwargs):
        if not role_allows(role, Role.DEPLOYER):
            kwargs["exclude"] = ("actions",)  # A viewer has no actions: no empty column.
        super().__init__(*args, **kwargs)
        self.app = app
        self.current_id = app.current_revision_id
        self.role = role
        self.now = timezone.now()  # One "now" for every row's relative time.
        self.can_deploy = role_allows(role, Role.DEPLOYER)
        self.can_admin = role_allows(role, Role.ADMIN)
        self._confirm_urls = {
            action: reverse("confirm", args=[app.name, action])
            for action in ("rollback", "resume", "suspend", "delete", "pin", "unpin")
        }
        self._compare_url = reverse("compare", args=[app.name])
        self._gateway = f"{settings.GATEWAY_URL.rstrip('/')}/{app.name}@"
        # Who made Current what it is, and the one before it (incident view, issue 10).
        self.previous_id = app.previous_revision_id
        self.story = current_story(app)

    def page_rows(self) -> Iterator[str]:
        """Each row of the page as one `<tr>`, its cells from the render_<column> methods.

        A cell that is not already safe markup (a plain string) is escaped here."""
        cells = [
            (column.attrs["td"].as_html(), getattr(self, f"render_{column.name}"))
            for column in self.columns
        ]
        for counter, row in enumerate(self.paginated_rows):
            record = row.record
            tds = "".join(f"<td {td}>{escape(render(record))}</td>" for td, render in cells)
            # The id lets "Jump to Current" scroll to the row, and morphing swaps match
            # rows by it, so a refresh keeps what is open and focused in each.
            yield format_html(
                '<tr id="rev-{}" data-testid="revision-row" data-revision="{}" data-status="{}"'
                ' data-current="{}" data-previous="{}" class="{}">{}</tr>',
                record.short_id,
                record.short_id,
                record.status,
                "true" if record.id == self.current_id else "false",
                "true" if record.id == self.previous_id else "false",
                "odd" if counter % 2 else "even",
                mark_safe(tds),  # Every piece of it was escaped or built by format_html.
            )

    def render_revision(self, record: Revision) -> str:
        return format_html(
            '<span class="rev"><code class="rev-id" data-testid="revision-id">{0}</code>'
            '<button type="button" class="copy" data-copy="{1}" aria-label="Copy revision id {1}"'
            ' title="Copy full id {1}">{2}</button></span>',
            record.short_id,
            record.id,
            COPY_ICON,
        )

    def render_revision_url(self, record: Revision) -> str:
        """A Deployed revision's own gateway URL (copyable), and a link comparing it with
        Current; folded, so the row stays one line until it is opened."""
        compare = ""
        if self.current_id and record.id != self.current_id:
            compare = format_html(
                '<a href="{}?a={}&amp;b={}" data-testid="compare-link">Compare with Current</a>',
                self._compare_url,
                short_id(self.current_id),
                record.short_id,
            )
        if record.status != RevisionStatus.DEPLOYED:
            return compare or mark_safe('<span class="muted">—</span>')
        url = f"{self._gateway}{record.short_id}/"
        return format_html(
            '<details class="rev-url"><summary>URL</summary><span class="rev">'
            '<code data-testid="revision-url">{0}</code><button type="button" class="copy"'
            ' data-copy="{0}" aria-label="Copy URL {0}" title="Copy URL">{1}</button></span>'
            "</details>{2}",
            url,
            COPY_ICON,
            compare,
        )

    def render_status(self, record: Revision) -> str:
        current = CURRENT_BADGE if record.id == self.current_id else ""
        if record.id == self.previous_id:
            current = markup.PREVIOUS_BADGE
        badges = format_html(
            '<span class="badges">{}{}{}{}</span>',
            markup.status_badge(record.status, record.get_status_display()),
            " " if current else "",
            current,
            _pinned_badge(record),
        )
        if record.id == self.current_id and self.story:
            return format_html("{}{}", badges, markup.current_story(self.story, self.now))
        return badges

    def render_message(self, record: Revision) -> str:
        parts = [format_html('<div class="msg">{}</div>', record.message or "(no message)")]
        if record.annotations:
            parts.append(
                format_html(
                    '<ul class="annotations" aria-label="Annotations">{}</ul>',
                    format_html_join(
                        "",
                        '<li><span class="k">{}</span>={}</li>',
                        record.annotations.items(),
                    ),
                )
            )
        op = record.deploy_ops[0] if record.deploy_ops else None
        if record.status == RevisionStatus.DEPLOYING and op:
            parts.append(
                format_html(
                    '<ol class="steps" data-testid="deploy-steps">{}</ol>',
                    markup.steps(op.steps.all()),
                )
            )
        elif record.status == RevisionStatus.FAILED:
            parts.append(_failure(record, op))
        return mark_safe("\n".join(parts))  # Each part was built by format_html.

    def render_deployed_by(self, record: Revision) -> str:
        return record.deployed_by.username if record.deployed_by else "—"

    def render_created_at(self, record: Revision) -> str:
        return markup.when(record.created_at, self.now)

    def render_settings(self, record: Revision) -> str:
        s = record.settings
        if not s:
            return mark_safe('<span class="muted">—</span>')
        extra = ""
        if s.get("concurrency_buffer"):
            extra += f" · buffer {s['concurrency_buffer']}"
        if s.get("max_multiplexing", "") != 1:
            extra += f" · mux {s.get('max_multiplexing', '')}"
        return format_html(
            '<span class="machine" title="machine type">{}</span>\n'
            '<span class="scaling">min {} · max {} · keep-alive {}s{}</span>',
            s.get("machine_type", ""),
            s.get("min_concurrency", ""),
            s.get("max_concurrency", ""),
            s.get("keep_alive", ""),
            extra,
        )

    def render_actions(self, record: Revision) -> str:
        if not self.can_deploy:
            return ""
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
        return format_html('<div class="actions">\n{}\n</div>', mark_safe("\n".join(buttons)))

    def _button(self, record: Revision, action: str, label: str, style: str = "") -> str:
        ref = record.short_id
        why = revision_refusal(action, self.app, record) or ""
        url = f"{self._confirm_urls[action]}?rev={ref}"
        return markup.action_button(action, label, why, url, ref, style)


def _pinned_badge(record: Revision) -> str:
    """The Pinned badge (retention and delete-rev leave the revision alone), saying who
    pinned it and when on hover."""
    if not record.pinned:
        return ""
    return format_html(
        ' <span class="badge pinned" data-testid="pinned-badge" title="{}">'
        '<span aria-hidden="true">📌</span> Pinned</span>',
        pin_note(record),
    )


def _failure(record: Revision, op: Operation | None) -> str:
    """The folded "Why it failed" of a Failed revision: its error, steps and log tail."""
    parts = ["<summary>Why it failed</summary>"]
    if record.error:
        parts.append(
            format_html(
                '<pre class="error-text" data-testid="revision-error">{}</pre>', record.error
            )
        )
    if op:
        parts.append(format_html('<ol class="steps">{}</ol>', markup.steps(op.steps.all())))
    if record.log_tail:
        parts.append(
            format_html(
                '<p class="label">Runner log (tail)</p><pre class="log" data-testid="revision-log">{}</pre>',
                record.log_tail,
            )
        )
    return format_html(
        '<details class="failure" data-testid="failure-detail">\n{}\n</details>',
        mark_safe("\n".join(parts)),  # Each part was built by format_html.
    )
