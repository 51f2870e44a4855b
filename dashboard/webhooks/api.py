"""The webhooks' part of the control API, under /api/v1/webhooks. Admins only: an
endpoint's URL can itself be a secret (a Slack incoming-webhook URL is one)."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from dashboard.controlplane.api import schemas as S
from dashboard.controlplane.api.auth import api_view, query_of
from dashboard.controlplane.api.views import paginated
from dashboard.controlplane.models import Role
from dashboard.webhooks import endpoints
from dashboard.webhooks.models import Endpoint


@api_view(
    GET=Role.ADMIN,
    POST=Role.ADMIN,
    body=S.WebhookBody,
    answers={"GET": {200: S.WebhookList}, "POST": {201: S.WebhookCreated}},
    summary={"GET": "Every webhook endpoint", "POST": "Add a webhook endpoint"},
)
def webhooks(request: HttpRequest) -> JsonResponse:
    if request.method == "POST":
        body = request.input
        created = endpoints.create(
            request.actor.user,
            url=body.get("url"),
            app=body.get("app"),
            events_=body.get("events"),
            format=body.get("format"),
            description=body.get("description"),
            idempotency_key=request.actor.idempotency_key,
            request_hash=request.actor.request_hash,
        )
        # The only answer that carries the secret: receivers need it to check signatures.
        return JsonResponse(
            {"webhook": endpoints.endpoint_json(created), "secret": created.secret}, status=201
        )
    found = Endpoint.objects.select_related("app", "created_by")
    return JsonResponse({"webhooks": [endpoints.endpoint_json(e) for e in found]})


@api_view(
    GET=Role.ADMIN,
    DELETE=Role.ADMIN,
    answers={"GET": {200: S.Webhook}, "DELETE": {200: S.WebhookDeleted}},
    summary={"GET": "One webhook endpoint", "DELETE": "Remove a webhook endpoint"},
)
def webhook_detail(request: HttpRequest, webhook_id: str) -> JsonResponse:
    endpoint = endpoints.get(webhook_id)
    data = endpoints.endpoint_json(endpoint)
    if request.method == "DELETE":
        endpoints.remove(endpoint)
        return JsonResponse({"deleted": data})
    return JsonResponse(data)


@api_view(
    GET=Role.ADMIN,
    query=S.PageQuery,
    answers={"GET": {200: S.DeliveryPage}},
    summary="An endpoint's deliveries",
)
def deliveries(request: HttpRequest, webhook_id: str) -> JsonResponse:
    endpoint = endpoints.get(webhook_id)
    deliveries = endpoint.deliveries.order_by("-created_at")
    query = query_of(S.PageQuery, request)
    return JsonResponse(paginated(deliveries, query, "deliveries", endpoints.delivery_json))


@api_view(POST=Role.ADMIN, answers={"POST": {202: S.DeliveryAnswer}}, summary="Send a test event")
def test(request: HttpRequest, webhook_id: str) -> JsonResponse:
    endpoint = endpoints.get(webhook_id)
    delivery = endpoints.send_test(endpoint, request.actor.user.get_username())
    return JsonResponse({"delivery": endpoints.delivery_json(delivery)}, status=202)
