"""/api/v1/webhooks: admins register, list, inspect and remove endpoints and read their
deliveries; everyone else is refused, and bad input is refused precisely, changing nothing."""

from __future__ import annotations

import json

import pytest

from dashboard.controlplane.api.contract import document
from dashboard.controlplane.models import App
from dashboard.webhooks.models import Delivery, DeliveryStatus, Endpoint


def _register(admin, **fields):
    body = {"url": "https://hooks.example.com/in", **fields}
    return admin.post("webhooks", body)


@pytest.mark.django_db
def test_an_admin_registers_an_endpoint_and_sees_its_secret_only_in_that_answer(api_as):
    admin = api_as("admin")
    App.objects.create(name="shop")
    response = _register(
        admin, app="shop", events=["set_rev.succeeded", "deploy.failed"], format="slack"
    )
    assert response.status_code == 201, response.content
    data = response.json()
    endpoint = Endpoint.objects.get()
    assert data["secret"] == endpoint.secret and data["secret"].startswith("whsec_")
    assert data["webhook"] == {
        "id": endpoint.id,
        "url": "https://hooks.example.com/in",
        "app": "shop",
        # Kept in the enum's order, whatever order they were sent in.
        "events": ["deploy.failed", "set_rev.succeeded"],
        "format": "slack",
        "description": "",
        "secret_hint": endpoint.secret[:10] + "…",
        "created_by": admin.user.get_username(),
        "created_at": data["webhook"]["created_at"],
    }

    listed = admin.get("webhooks").json()["webhooks"]
    assert [w["id"] for w in listed] == [endpoint.id]
    one = admin.get(f"webhooks/{endpoint.id}").json()
    assert endpoint.secret not in json.dumps(listed) + json.dumps(one)


@pytest.mark.django_db
def test_an_admin_removes_an_endpoint_with_its_deliveries(api_as):
    admin = api_as("admin")
    endpoint = Endpoint.objects.get(pk=_register(admin).json()["webhook"]["id"])
    Delivery.objects.create(endpoint=endpoint, event="test", body="{}")
    response = admin.delete(f"webhooks/{endpoint.id}")
    assert response.status_code == 200
    assert response.json()["deleted"]["url"] == "https://hooks.example.com/in"
    assert not Endpoint.objects.exists() and not Delivery.objects.exists()
    assert admin.get(f"webhooks/{endpoint.id}").status_code == 404


@pytest.mark.django_db
def test_deliveries_are_listed_newest_first_with_status_attempts_and_response_code(api_as):
    admin = api_as("admin")
    endpoint = Endpoint.objects.get(pk=_register(admin).json()["webhook"]["id"])
    old = Delivery.objects.create(
        endpoint=endpoint,
        event="deploy.succeeded",
        body="{}",
        status=DeliveryStatus.FAILED,
        attempts=8,
        response_code=500,
        error="answered 500: boom",
    )
    new = Delivery.objects.create(
        endpoint=endpoint,
        event="test",
        body="{}",
        status=DeliveryStatus.SUCCEEDED,
        attempts=1,
        response_code=204,
    )
    response = admin.get(f"webhooks/{endpoint.id}/deliveries", {"page_size": 1})
    assert response.status_code == 200
    page = response.json()
    assert page["count"] == 2 and page["next"] == 2
    assert [d["id"] for d in page["deliveries"]] == [str(new.id)]
    second = admin.get(f"webhooks/{endpoint.id}/deliveries", {"page": 2, "page_size": 1}).json()
    (failed,) = [d for d in second["deliveries"] if d["id"] == str(old.id)]
    assert failed["status"] == "failed"
    assert failed["attempts"] == 8
    assert failed["response_code"] == 500
    assert failed["error"] == "answered 500: boom"
    assert failed["next_attempt_at"] is None


@pytest.mark.django_db
def test_the_answers_have_the_documents_shapes(api_as):
    admin = api_as("admin")
    created = _register(admin).json()
    endpoint = Endpoint.objects.get()
    Delivery.objects.create(endpoint=endpoint, event="test", body="{}")
    schemas = document()["components"]["schemas"]
    assert set(created["webhook"]) == set(schemas["Webhook"]["properties"])
    delivery = admin.get(f"webhooks/{endpoint.id}/deliveries").json()["deliveries"][0]
    assert set(delivery) == set(schemas["WebhookDelivery"]["properties"])
    events = schemas["WebhookEvent"]["enum"]
    assert {"deploy.succeeded", "deploy.failed", "set_rev.succeeded", "test"} <= set(events)


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["viewer", "deployer"])
def test_only_admins_may_see_or_change_webhooks(api_as, role):
    endpoint = Endpoint.objects.get(pk=_register(api_as("admin")).json()["webhook"]["id"])
    client = api_as(role)
    refusal = f"this needs the admin role; your role is {role}"
    for response in (
        client.get("webhooks"),
        client.post("webhooks", {"url": "https://elsewhere.example.com/"}),
        client.get(f"webhooks/{endpoint.id}"),
        client.get(f"webhooks/{endpoint.id}/deliveries"),
        client.post(f"webhooks/{endpoint.id}/test"),
        client.delete(f"webhooks/{endpoint.id}"),
    ):
        assert response.status_code == 403
        assert response.json()["error"]["message"] == refusal
    assert list(Endpoint.objects.values_list("url", flat=True)) == ["https://hooks.example.com/in"]
    assert not Delivery.objects.exists()


@pytest.mark.django_db
def test_a_call_without_a_token_is_refused(api_as):
    from tests.controlplane.conftest import ApiClient

    response = ApiClient(None).post("webhooks", {"url": "https://hooks.example.com/in"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    assert not Endpoint.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({}, 400, "url is required: the http:// or https:// address to deliver to"),
        ({"url": "ftp://files.example.com/"}, 400, "url must start with http:// or https://"),
        ({"url": "javascript:alert(1)"}, 400, "url must start with http:// or https://"),
        ({"url": "https://"}, 400, "url 'https://' has no host"),
        ({"url": "http://example.com:99999/"}, 400, "is not a valid address"),
        ({"url": "https://a.example/ x"}, 400, "url must not contain spaces"),
        ({"url": "https://a.example/" + "x" * 2000}, 400, "the most allowed is 2000"),
        ({"url": 7}, 400, "url is required"),
        ({"url": "https://a.example/", "format": "xml"}, 400, "format must be one of json, slack"),
        ({"url": "https://a.example/", "events": "deploy.failed"}, 400, "events must be a list"),
        ({"url": "https://a.example/", "events": ["deploy.exploded"]}, 400, "unknown event"),
        ({"url": "https://a.example/", "app": "ghost"}, 404, "no app named 'ghost'"),
        ({"url": "https://a.example/", "secret": "mine"}, 400, "unknown field 'secret'"),
        ({"url": "https://a.example/", "description": "d" * 201}, 400, "longer than 200"),
    ],
)
def test_bad_input_is_refused_precisely_and_registers_nothing(api_as, body, status, message):
    response = api_as("admin").post("webhooks", body)
    assert response.status_code == status, response.content
    assert message in response.json()["error"]["message"]
    assert not Endpoint.objects.exists()


@pytest.mark.django_db
def test_a_body_that_is_not_json_is_refused(api_as):
    admin = api_as("admin")
    response = admin.client.post(
        "/api/v1/webhooks", "{not json", content_type="application/json", headers=admin.headers()
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    assert not Endpoint.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("ref", "status", "message"),
    [
        ("abc", 400, "'abc' is not a webhook id (a whole number)"),
        ("9" * 30, 400, f"'{'9' * 30}' is not a webhook id (a whole number)"),
        ("424242", 404, "no webhook 424242"),
    ],
)
def test_an_unknown_or_malformed_id_is_refused(api_as, ref, status, message):
    admin = api_as("admin")
    for response in (
        admin.get(f"webhooks/{ref}"),
        admin.get(f"webhooks/{ref}/deliveries"),
        admin.post(f"webhooks/{ref}/test"),
        admin.delete(f"webhooks/{ref}"),
    ):
        assert response.status_code == status
        assert response.json()["error"]["message"] == message
    assert not Delivery.objects.exists()


@pytest.mark.django_db
def test_a_retried_registration_with_the_same_idempotency_key_registers_one_endpoint(api_as):
    admin = api_as("admin")
    key = {"Idempotency-Key": "retry-me"}
    first = admin.post("webhooks", {"url": "https://hooks.example.com/in"}, **key)
    again = admin.post("webhooks", {"url": "https://hooks.example.com/in"}, **key)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert Endpoint.objects.count() == 1

    other = admin.post("webhooks", {"url": "https://hooks.example.com/other"}, **key)
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert list(Endpoint.objects.values_list("url", flat=True)) == ["https://hooks.example.com/in"]
