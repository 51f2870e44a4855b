"""The Webhooks pages' tables: endpoints, and one endpoint's deliveries."""

from __future__ import annotations

import django_tables2 as tables
from django.urls import reverse
from django.utils.html import format_html

from dashboard.web.tables import PagedTable, _labelled
from dashboard.web.templatetags.switchboard import badge
from dashboard.webhooks.models import Delivery, DeliveryStatus, Endpoint, EventType

# Delivery states drawn with the operation badges' colours: same meaning, same look.
_BADGE_CLASS = {
    DeliveryStatus.PENDING: "op-queued",
    DeliveryStatus.RETRYING: "op-running",
    DeliveryStatus.SUCCEEDED: "op-succeeded",
    DeliveryStatus.FAILED: "op-failed",
}


def delivery_badge(delivery: Delivery) -> str:
    return format_html(
        '<span class="badge {}" data-testid="delivery-status">{}</span>',
        _BADGE_CLASS.get(delivery.status, "op-queued"),
        delivery.get_status_display(),
    )


def event_label(event: str) -> str:
    return EventType(event).label if event in EventType.values else event


@_labelled
class EndpointsTable(PagedTable):
    id = tables.Column(verbose_name="Id")
    url = tables.Column(verbose_name="URL")
    app = tables.Column(verbose_name="App", empty_values=())
    events = tables.Column(verbose_name="Events", empty_values=())
    format = tables.Column(verbose_name="Format")
    last_delivery = tables.Column(verbose_name="Last delivery", empty_values=())

    class Meta:
        model = Endpoint
        fields = ()
        sequence = ("id", "url", "app", "events", "format", "last_delivery")
        orderable = False
        template_name = "django_tables2/table.html"
        attrs = {"class": "table cards", "data-testid": "webhooks-table"}
        empty_text = "No webhooks yet: add one below."
        row_attrs = {"data-testid": "webhook-row", "data-webhook": lambda record: record.id}

    def render_url(self, record: Endpoint) -> str:
        return format_html(
            '<a href="{}" data-testid="webhook-link"><code>{}</code></a>{}',
            reverse("webhook", args=[record.id]),
            record.url,
            format_html('<div class="muted small">{}</div>', record.description)
            if record.description
            else "",
        )

    def render_app(self, record: Endpoint) -> str:
        return record.app.name if record.app_id else "All apps"

    def render_events(self, record: Endpoint) -> str:
        return ", ".join(record.events) if record.events else "All events"

    def render_last_delivery(self, record: Endpoint) -> str:
        last = getattr(record, "last_delivery", None)
        if last is None:
            return "—"
        code = f" · HTTP {last.response_code}" if last.response_code else ""
        return format_html(
            '{} <span class="muted">{}{} · {}</span>',
            delivery_badge(last),
            last.event,
            code,
            badge("when", value=last.created_at),
        )


@_labelled
class DeliveriesTable(PagedTable):
    created_at = tables.Column(verbose_name="Created")
    event = tables.Column(verbose_name="Event")
    status = tables.Column(verbose_name="Status")
    attempts = tables.Column(verbose_name="Attempts")
    response_code = tables.Column(verbose_name="Response", empty_values=())
    error = tables.Column(verbose_name="Last error", empty_values=())

    class Meta:
        model = Delivery
        fields = ()
        sequence = ("created_at", "event", "status", "attempts", "response_code", "error")
        orderable = False
        template_name = "django_tables2/table.html"
        attrs = {"class": "table cards compact", "data-testid": "deliveries-table"}
        row_attrs = {
            "data-testid": "delivery-row",
            "data-delivery": lambda record: record.id,
            "data-status": lambda record: record.status,
        }

    def render_created_at(self, record: Delivery) -> str:
        return badge("when", value=record.created_at)

    def render_event(self, record: Delivery) -> str:
        return format_html("<code>{}</code>", record.event)

    def render_status(self, record: Delivery) -> str:
        if record.status == DeliveryStatus.RETRYING:
            return format_html(
                '{} <span class="muted small">next try {}</span>',
                delivery_badge(record),
                badge("when", value=record.next_attempt_at),
            )
        return delivery_badge(record)

    def render_response_code(self, record: Delivery) -> str:
        return str(record.response_code) if record.response_code else "—"

    def render_error(self, record: Delivery) -> str:
        return format_html('<span class="error-text small">{}</span>', record.error or "")
