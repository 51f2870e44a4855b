"""Deliveries through the real worker to a real receiver on 127.0.0.1: signed (checked with
the README's own snippet), retried with backoff, never in an operation's way, in either
format; and, in this process, the rules of one attempt (redirects, giving up, filters)."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone

from dashboard.controlplane.models import App, Operation, OperationState
from dashboard.webhooks import delivery as deliveries
from dashboard.webhooks import events
from dashboard.webhooks.models import Delivery, DeliveryStatus, Endpoint
from tests.conftest import wait_until
from tests.webhooks.conftest import documented_verify


def _register(api_as, url: str, **fields) -> dict:
    response = api_as("admin").post("webhooks", {"url": url, **fields})
    assert response.status_code == 201, response.content
    return response.json()


def _finished(**filters) -> Delivery:
    return wait_until(
        lambda: Delivery.objects.filter(
            status__in=[DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED], **filters
        ).first(),
        what="a finished delivery",
    )


@pytest.mark.django_db(transaction=True)
def test_a_rollback_is_delivered_signed_and_the_documented_snippet_verifies_it(
    system, api_as, rolled_forward, receiver
):
    created = _register(api_as, receiver.url, app="shop", events=["set_rev.succeeded"])
    deployer = api_as("deployer")
    response = deployer.post(
        "apps/shop/set-rev",
        {"revision": str(rolled_forward.older.id), "strategy": "recreate", "reason": "v2 leaks"},
    )
    assert response.status_code == 200, response.content
    assert response.json()["operation"]["state"] == "succeeded"

    (got,) = receiver.wait_for(1)
    verify = documented_verify()
    header = got.headers["x-switchboard-signature"]
    assert verify(created["secret"], header, got.body)
    assert not verify("whsec_someone-else", header, got.body)
    assert not verify(created["secret"], header, got.body.replace(b"v2 leaks", b"all fine"))

    payload = json.loads(got.body)
    assert payload["event"] == got.headers["x-switchboard-event"] == "set_rev.succeeded"
    assert payload["direction"] == "rollback"
    assert payload["app"] == "shop"
    assert payload["operation"]["requester"] == deployer.user.get_username()
    assert payload["operation"]["reason"] == "v2 leaks"
    assert payload["text"].startswith(
        f"rollback (set-rev) of shop from {rolled_forward.current_revision.short_id} "
        f"to {rolled_forward.older.short_id} succeeded, by {deployer.user.get_username()} (cli)"
    )
    delivery = _finished()
    assert payload["id"] == got.headers["x-switchboard-delivery"] == str(delivery.id)
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("succeeded", 1, 200)
    assert str(delivery.operation_id) == response.json()["operation"]["id"]


@pytest.mark.django_db(transaction=True)
def test_a_delivery_answered_500_is_retried_and_then_delivered(system, api_as, make_receiver):
    receiver = make_receiver(answers=[500])
    created = _register(api_as, receiver.url)
    response = api_as("admin").post(f"webhooks/{created['webhook']['id']}/test")
    assert response.status_code == 202
    assert response.json()["delivery"]["status"] == "pending"

    delivery = _finished()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("succeeded", 2, 200)
    first, second = receiver.wait_for(2)
    # The same bytes each time, each signed afresh.
    assert first.body == second.body
    verify = documented_verify()
    assert verify(created["secret"], first.headers["x-switchboard-signature"], first.body)
    assert verify(created["secret"], second.headers["x-switchboard-signature"], second.body)
    assert json.loads(second.body)["event"] == "test"


@pytest.mark.django_db(transaction=True)
def test_an_operation_succeeds_while_the_receiver_is_down_and_is_delivered_once_it_is_up(
    system, api_as, rolled_forward, make_receiver
):
    receiver = make_receiver(start=False)
    _register(api_as, receiver.url)
    response = api_as("deployer").post("apps/shop/scale", {"keep_alive": 42})
    assert response.status_code == 200, response.content
    assert response.json()["operation"]["state"] == "succeeded"
    assert App.objects.get(name="shop").settings["keep_alive"] == 42

    retrying = wait_until(
        lambda: Delivery.objects.filter(status=DeliveryStatus.RETRYING, attempts__gte=2).first(),
        what="a delivery retried after failing to connect",
    )
    assert "cannot connect" in retrying.error
    assert retrying.response_code is None
    op = Operation.objects.get(pk=response.json()["operation"]["id"])
    assert op.state == OperationState.SUCCEEDED and op.error == ""

    receiver.start()
    delivered = _finished()
    assert delivered.status == DeliveryStatus.SUCCEEDED
    assert delivered.attempts >= 3 and delivered.response_code == 200
    assert [json.loads(r.body)["event"] for r in receiver.received] == ["scale.succeeded"]


@pytest.mark.django_db(transaction=True)
def test_the_slack_format_sends_only_text_and_is_signed_too(
    system, api_as, rolled_forward, receiver
):
    created = _register(api_as, receiver.url, format="slack")
    deployer = api_as("deployer")
    response = deployer.post("apps/shop/scale", {"keep_alive": 7, "reason": "quiet night"})
    assert response.status_code == 200
    (got,) = receiver.wait_for(1)
    body = json.loads(got.body)
    assert list(body) == ["text"]
    assert body["text"].startswith(
        f"scale of shop (revision {rolled_forward.current_revision.short_id}) succeeded, "
        f"by {deployer.user.get_username()} (cli): “quiet night”"
    )
    assert body["text"].endswith("/apps/shop/history|History>")
    assert documented_verify()(created["secret"], got.headers["x-switchboard-signature"], got.body)


# -- one attempt, in this process -------------------------------------------------------


def _due_delivery(url: str, **endpoint_fields) -> Delivery:
    endpoint = Endpoint.objects.create(url=url, **endpoint_fields)
    return events.create_delivery(endpoint, events.test_payload(endpoint, "tester"))


@pytest.mark.django_db
def test_a_redirect_is_not_followed_and_counts_as_a_failed_attempt(make_receiver):
    elsewhere = make_receiver()
    receiver = make_receiver(answers=[302])
    receiver.location = elsewhere.url
    delivery = _due_delivery(receiver.url)
    assert deliveries.attempt(str(delivery.id)) is not None  # To be tried again.
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.RETRYING
    assert (delivery.attempts, delivery.response_code) == (1, 302)
    assert delivery.error == "answered 302 (redirects are not followed)"
    assert len(receiver.received) == 1 and elsewhere.received == []


@pytest.mark.django_db
def test_a_delivery_fails_for_good_after_the_last_attempt(make_receiver, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    settings.WEBHOOK_RETRY_DELAY = 0  # Due again at once.
    receiver = make_receiver(answers=[500, 503])
    delivery = _due_delivery(receiver.url)
    assert deliveries.attempt(str(delivery.id)) == 0
    assert deliveries.attempt(str(delivery.id)) is None
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("failed", 2, 503)
    assert delivery.error.startswith("answered 503")
    assert delivery.finished_at is not None
    # Done: another copy of the task sends nothing more.
    assert deliveries.attempt(str(delivery.id)) is None
    assert len(receiver.received) == 2


@pytest.mark.django_db
def test_a_delivery_not_yet_due_is_not_sent_by_a_second_copy_of_its_task(receiver, settings):
    settings.WEBHOOK_RETRY_DELAY = 3600
    receiver.answers = [500]
    delivery = _due_delivery(receiver.url)
    assert deliveries.attempt(str(delivery.id)) == 3600
    assert deliveries.attempt(str(delivery.id)) is None
    assert len(receiver.received) == 1


def test_the_backoff_doubles_up_to_its_cap(settings):
    settings.WEBHOOK_RETRY_DELAY, settings.WEBHOOK_RETRY_CAP = 10, 60
    assert [deliveries.backoff(n) for n in range(1, 6)] == [10, 20, 40, 60, 60]


@pytest.mark.django_db
def test_an_event_goes_to_global_endpoints_and_those_of_its_app_that_want_it():
    shop, other = App.objects.create(name="shop"), App.objects.create(name="other")
    everything = Endpoint.objects.create(url="http://127.0.0.1:9/a")
    shop_rollbacks = Endpoint.objects.create(
        url="http://127.0.0.1:9/b", app=shop, events=["set_rev.succeeded"]
    )
    Endpoint.objects.create(url="http://127.0.0.1:9/c", app=other)
    Endpoint.objects.create(url="http://127.0.0.1:9/d", app=shop, events=["deploy.failed"])
    assert events.endpoints_for(shop, "set_rev.succeeded") == [everything, shop_rollbacks]
    assert events.endpoints_for(shop, "scale.succeeded") == [everything]


@pytest.mark.django_db(transaction=True)
def test_a_delivery_whose_message_was_lost_is_queued_again_by_the_sweeper(system, receiver):
    # Created without a task (as when Redis lost the message), due long ago.
    lost = _due_delivery(receiver.url)
    Delivery.objects.filter(pk=lost.pk).update(
        next_attempt_at=timezone.now() - deliveries.LOST_AFTER * 2
    )
    assert deliveries.sweep() == 1
    assert _finished(pk=lost.pk).status == DeliveryStatus.SUCCEEDED
    assert [json.loads(r.body)["id"] for r in receiver.wait_for(1)] == [str(lost.id)]


@pytest.mark.django_db(transaction=True)
def test_deploys_ended_by_the_worker_send_deploy_succeeded_and_deploy_failed(
    system, api_as, receiver
):
    from tests.controlplane.conftest import app_source, make_bundle

    _register(api_as, receiver.url, events=["deploy.succeeded", "deploy.failed"])
    deployer = api_as("deployer")
    for source in (app_source(), "import no_such_module\n"):
        response = deployer.deploy("fresh", make_bundle({"app.py": source}), strategy="recreate")
        assert response.status_code == 202, response.content
        operation = response.json()["operation"]["id"]
        wait_until(lambda op=operation: Operation.objects.get(pk=op).is_finished, what="the deploy")
    got = receiver.wait_for(2)
    payloads = sorted((json.loads(r.body) for r in got), key=lambda p: p["event"])
    assert [p["event"] for p in payloads] == ["deploy.failed", "deploy.succeeded"]
    assert "ModuleNotFoundError" in payloads[0]["operation"]["error"]
    assert payloads[0]["text"].startswith("deploy of fresh (revision ")
