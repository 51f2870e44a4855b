"""The Webhooks pages (admins only): the endpoints with an Add form, and one endpoint's
deliveries with Send test event and Delete. Small function views; the rules live in
endpoints.py, shared with the API."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import OuterRef, Subquery
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseStopPolling
from django_tables2 import RequestConfig

from dashboard.controlplane.errors import ControlError
from dashboard.controlplane.models import Role
from dashboard.web.access import require_role
from dashboard.webhooks import endpoints
from dashboard.webhooks.forms import EndpointForm
from dashboard.webhooks.models import Delivery, DeliveryStatus, Endpoint
from dashboard.webhooks.tables import DeliveriesTable, EndpointsTable

DELIVERIES_PER_PAGE = 25


def _endpoint_or_404(webhook_id: int) -> Endpoint:
    try:
        return endpoints.get(webhook_id)
    except ControlError as exc:
        raise Http404(exc.message) from None


def _list(request: HttpRequest, form: EndpointForm, status: int = 200) -> HttpResponse:
    last = Delivery.objects.filter(endpoint=OuterRef("pk")).order_by("-created_at")
    rows = list(
        Endpoint.objects.select_related("app").annotate(last_id=Subquery(last.values("id")[:1]))
    )
    lasts = Delivery.objects.in_bulk([e.last_id for e in rows if e.last_id])
    for row in rows:
        row.last_delivery = lasts.get(row.last_id)
    table = EndpointsTable(rows)
    RequestConfig(request, paginate={"per_page": 100}).configure(table)
    return render(request, "webhooks/list.html", {"table": table, "form": form}, status=status)


@require_http_methods(["GET", "POST"])
@login_required
def webhooks(request: HttpRequest) -> HttpResponse:
    require_role(request, Role.ADMIN)
    if request.method == "GET":
        return _list(request, EndpointForm())
    form = EndpointForm(request.POST)
    if not form.is_valid():
        return _list(request, form, status=400)
    data = form.cleaned_data
    try:
        created = endpoints.create(
            request.user,
            url=data["url"],
            app=data["app"] or None,
            events_=data["events"],
            format=data["format"],
            description=data["description"],
        )
    except ControlError as exc:  # The app was deleted since the page was drawn.
        form.add_error(None, exc.message)
        return _list(request, form, status=exc.status)
    # The secret is shown on this one answer only (no redirect): it is not shown again.
    return _detail(request, created, secret=created.secret)


def _detail(request: HttpRequest, endpoint: Endpoint, secret: str = "") -> HttpResponse:
    table = DeliveriesTable(endpoint.deliveries.select_related("endpoint").order_by("-created_at"))
    RequestConfig(request, paginate={"per_page": DELIVERIES_PER_PAGE}).configure(table)
    unfinished = (DeliveryStatus.PENDING, DeliveryStatus.RETRYING)
    busy = any(row.record.status in unfinished for row in table.page.object_list)
    context = {"endpoint": endpoint, "table": table, "secret": secret, "busy": busy}
    if request.htmx:
        response = render(request, "webhooks/detail.html#deliveries", context)
        # Nothing on this page can change by itself any more: 286 stops htmx polling.
        return response if busy else HttpResponseStopPolling(response.content)
    return render(request, "webhooks/detail.html", context)


@require_GET
@login_required
def webhook(request: HttpRequest, webhook_id: int) -> HttpResponse:
    require_role(request, Role.ADMIN)
    return _detail(request, _endpoint_or_404(webhook_id))


@require_POST
@login_required
def send_test(request: HttpRequest, webhook_id: int) -> HttpResponse:
    require_role(request, Role.ADMIN)
    endpoint = _endpoint_or_404(webhook_id)
    endpoints.send_test(endpoint, request.user.get_username())
    messages.success(request, "Test event queued; it appears below as it is sent.")
    return redirect("webhook", webhook_id=endpoint.id)


@require_POST
@login_required
def delete(request: HttpRequest, webhook_id: int) -> HttpResponse:
    require_role(request, Role.ADMIN)
    endpoint = _endpoint_or_404(webhook_id)
    url = endpoint.url
    endpoints.remove(endpoint)
    messages.success(request, f"Webhook {webhook_id} ({url}) was deleted.")
    return redirect("webhooks")
