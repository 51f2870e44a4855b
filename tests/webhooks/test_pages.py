"""The Webhooks pages: admins list endpoints, add one (its secret shown once), read its
deliveries, send a test event and delete it; nobody else gets in."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import reverse

from dashboard.controlplane.models import App
from dashboard.webhooks.models import Delivery, DeliveryStatus, Endpoint
from tests.conftest import wait_until


def _text(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


@pytest.mark.django_db
def test_the_page_lists_endpoints_with_their_last_delivery(web_as):
    shop = App.objects.create(name="shop")
    everything = Endpoint.objects.create(url="https://hooks.example.com/all", description="ops")
    Endpoint.objects.create(url="https://chat.example.com/x", app=shop, format="slack")
    Delivery.objects.create(
        endpoint=everything,
        event="deploy.failed",
        body="{}",
        status=DeliveryStatus.SUCCEEDED,
        attempts=1,
        response_code=204,
    )
    response = web_as("admin").get(reverse("webhooks"))
    assert response.status_code == 200
    page = _text(response)
    assert page.count('data-testid="webhook-row"') == 2
    assert "https://hooks.example.com/all" in page and "All apps" in page and "ops" in page
    assert "https://chat.example.com/x" in page and ">shop<" in page
    assert "Delivered" in page and "HTTP 204" in page
    assert everything.secret not in page


@pytest.mark.django_db
def test_the_detail_page_lists_deliveries_with_status_response_code_and_attempts(web_as):
    endpoint = Endpoint.objects.create(url="https://hooks.example.com/all")
    Delivery.objects.create(
        endpoint=endpoint,
        event="set_rev.succeeded",
        body="{}",
        status=DeliveryStatus.FAILED,
        attempts=8,
        response_code=502,
        error="answered 502: bad gateway",
    )
    Delivery.objects.create(endpoint=endpoint, event="test", body="{}", attempts=1)
    client = web_as("admin")
    response = client.get(reverse("webhook", args=[endpoint.id]))
    assert response.status_code == 200
    page = _text(response)
    assert page.count('data-testid="delivery-row"') == 2
    assert 'data-status="failed"' in page and "502" in page and "answered 502: bad gateway" in page
    assert ">8<" in page and "set_rev.succeeded" in page
    assert endpoint.secret not in page
    # A pending delivery can still change, so the region polls; its fragment says so.
    assert 'hx-trigger="sb-poll"' in page
    fragment = client.get(reverse("webhook", args=[endpoint.id]), headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and "<html" not in fragment.content.decode()
    Delivery.objects.filter(status=DeliveryStatus.PENDING).update(status=DeliveryStatus.SUCCEEDED)
    done = client.get(reverse("webhook", args=[endpoint.id]), headers={"HX-Request": "true"})
    assert done.status_code == 286  # htmx stops polling: nothing here can change any more.


@pytest.mark.django_db
def test_adding_an_endpoint_shows_its_secret_once(web_as):
    App.objects.create(name="shop")
    client = web_as("admin")
    response = client.post(
        reverse("webhooks"),
        {"url": "https://hooks.example.com/in", "app": "shop", "events": ["deploy.failed"]},
    )
    assert response.status_code == 200
    endpoint = Endpoint.objects.get()
    assert (endpoint.app.name, endpoint.events, endpoint.format) == (
        "shop",
        ["deploy.failed"],
        "json",
    )
    assert endpoint.secret in response.content.decode()
    again = client.get(reverse("webhook", args=[endpoint.id]))
    assert endpoint.secret not in again.content.decode()


@pytest.mark.django_db
def test_a_bad_url_is_refused_with_the_apis_words_and_nothing_is_added(web_as):
    response = web_as("admin").post(reverse("webhooks"), {"url": "ftp://files.example.com/"})
    assert response.status_code == 400
    assert "url must start with http:// or https://" in response.content.decode()
    assert not Endpoint.objects.exists()


@pytest.mark.django_db
def test_deleting_an_endpoint_removes_it(web_as):
    endpoint = Endpoint.objects.create(url="https://hooks.example.com/all")
    client = web_as("admin")
    response = client.post(reverse("webhook-delete", args=[endpoint.id]), follow=True)
    assert response.status_code == 200
    assert f"Webhook {endpoint.id} (https://hooks.example.com/all) was deleted." in _text(response)
    assert not Endpoint.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["viewer", "deployer"])
def test_only_admins_may_open_or_change_the_webhooks_pages(web_as, role):
    endpoint = Endpoint.objects.create(url="https://hooks.example.com/all")
    client = web_as(role)
    message = f"This needs the Admin role; you have {role.capitalize()}."
    for response in (
        client.get(reverse("webhooks")),
        client.post(reverse("webhooks"), {"url": "https://elsewhere.example.com/"}),
        client.get(reverse("webhook", args=[endpoint.id])),
        client.post(reverse("webhook-test", args=[endpoint.id])),
        client.post(reverse("webhook-delete", args=[endpoint.id])),
    ):
        assert response.status_code == 403
        assert message in response.content.decode()
    assert list(Endpoint.objects.values_list("url", flat=True)) == ["https://hooks.example.com/all"]
    assert not Delivery.objects.exists()
    # And the header has no link to them.
    assert 'data-testid="nav-webhooks"' not in client.get(reverse("apps")).content.decode()


@pytest.mark.django_db
def test_an_anonymous_visitor_is_sent_to_sign_in():
    from django.test import Client

    response = Client().get(reverse("webhooks"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


@pytest.mark.django_db
def test_the_header_links_admins_to_the_webhooks_page(web_as):
    page = web_as("admin").get(reverse("apps")).content.decode()
    assert f'href="{reverse("webhooks")}" data-testid="nav-webhooks"' in page


@pytest.mark.django_db(transaction=True)
def test_send_test_event_delivers_one_and_the_page_lists_it(system, web_as, receiver):
    endpoint = Endpoint.objects.create(url=receiver.url, format="slack")
    client = web_as("admin")
    response = client.post(reverse("webhook-test", args=[endpoint.id]), follow=True)
    assert response.status_code == 200
    assert "Test event queued" in _text(response)
    (got,) = receiver.wait_for(1)
    assert json.loads(got.body)["text"].startswith(
        f"Test event from Switchboard for webhook {endpoint.id}"
    )
    wait_until(
        lambda: Delivery.objects.filter(status=DeliveryStatus.SUCCEEDED).exists(),
        what="the test delivery recorded as delivered",
    )
    page = _text(client.get(reverse("webhook", args=[endpoint.id])))
    assert 'data-status="succeeded"' in page and ">200<" in page and ">test<" in page
