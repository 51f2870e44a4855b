"""`switchboard webhooks ...` as a user runs it, against the real system."""

from __future__ import annotations

import json
import re

import pytest

from dashboard.webhooks.models import Delivery, DeliveryStatus, Endpoint
from tests.cli.conftest import sb, viewer  # noqa: F401 - fixtures.
from tests.conftest import wait_until


@pytest.mark.django_db(transaction=True)
def test_an_admin_adds_lists_tests_reads_deliveries_and_removes_a_webhook(sb, receiver):  # noqa: F811
    added = sb("webhooks", "add", receiver.url, "--events", "deploy.failed,set_rev.succeeded")
    endpoint = Endpoint.objects.get()
    assert f"webhook {endpoint.id} added: {receiver.url} (all apps)" in added.stdout
    assert f"signing secret (shown only now): {endpoint.secret}" in added.stdout
    assert endpoint.events == ["deploy.failed", "set_rev.succeeded"]

    listed = sb("webhooks", "list").stdout
    assert receiver.url in listed and "deploy.failed, set_rev.succeeded" in listed
    assert endpoint.secret not in listed

    assert "test event queued" in sb("webhooks", "test", str(endpoint.id)).stdout
    receiver.wait_for(1)
    wait_until(
        lambda: Delivery.objects.filter(status=DeliveryStatus.SUCCEEDED).exists(),
        what="the test delivery recorded",
    )
    table = sb("webhooks", "deliveries", str(endpoint.id)).stdout
    assert re.search(r"\btest\s+succeeded\s+1\s+200\b", table), table
    as_json = json.loads(sb("webhooks", "deliveries", str(endpoint.id), "--json").stdout)
    assert as_json["deliveries"][0]["response_code"] == 200

    assert f"webhook {endpoint.id} removed" in sb("webhooks", "remove", str(endpoint.id)).stdout
    assert not Endpoint.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_bad_input_and_a_viewers_token_are_refused_with_one_line(sb, viewer):  # noqa: F811
    bad = sb("webhooks", "add", "ftp://files.example.com/", ok=False)
    assert bad.returncode == 1
    assert bad.stderr.strip() == (
        "error: url must start with http:// or https://, got 'ftp://files.example.com/'"
    )
    unknown = sb("webhooks", "add", "http://127.0.0.1:9/", "--events", "deploy.exploded", ok=False)
    assert "unknown event 'deploy.exploded'; allowed: deploy.succeeded" in unknown.stderr
    refused = viewer("webhooks", "list", ok=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == "error: this needs the admin role; your role is viewer"
    assert not Endpoint.objects.exists()
