"""POST /api/v1/apps/APP/network: an app's outbound network, admins only (README "Runner
sandbox"). The sandbox side is attacked in tests/security/test_network.py."""

from __future__ import annotations

import pytest

from dashboard.controlplane import events
from dashboard.controlplane.models import App, Operation, OperationKind


@pytest.mark.django_db
def test_an_admin_turns_outbound_network_on_and_history_records_it(admin, viewer, demo_app):
    response = admin.post("apps/demo/network", {"network": "outbound", "reason": "calls Stripe"})

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["app"]["network"] == "outbound"
    assert body["operation"]["kind"] == "network"
    assert body["operation"]["state"] == "succeeded"
    assert App.objects.get().network == "outbound"
    op = Operation.objects.get(kind=OperationKind.NETWORK)
    assert op.reason == "calls Stripe"
    assert op.params == {"network": "outbound"}
    assert any("network of demo is outbound" in s["message"] for s in body["operation"]["steps"])
    # Shown to everyone who can see the app, and carried to the runtime with its state.
    assert viewer.get("apps/demo").json()["network"] == "outbound"
    assert [a["network"] for a in viewer.get("apps").json()["apps"]] == ["outbound"]
    assert (
        events.app_state(App.objects.select_related("current_revision").get())["network"]
        == "outbound"
    )


@pytest.mark.django_db
def test_an_app_starts_with_network_off_and_an_admin_turns_it_off_again(admin, demo_app):
    assert demo_app.network == "off"
    admin.post("apps/demo/network", {"network": "outbound"})

    response = admin.post("apps/demo/network", {"network": "off"})

    assert response.status_code == 200, response.json()
    assert App.objects.get().network == "off"


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["viewer", "deployer"])
def test_only_an_admin_may_change_the_network(api_as, demo_app, role):
    ops = Operation.objects.count()

    response = api_as(role).post("apps/demo/network", {"network": "outbound"})

    assert response.status_code == 403
    assert response.json()["error"]["message"] == f"this needs the admin role; your role is {role}"
    assert App.objects.get().network == "off"
    assert Operation.objects.count() == ops


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"network": "on"}, "network must be one of off, outbound, got 'on'"),
        ({"network": "OUTBOUND"}, "network must be one of off, outbound, got 'OUTBOUND'"),
        ({"network": True}, "network must be one of off, outbound, got True"),
        ({"network": ["outbound"]}, "network must be one of off, outbound, got ['outbound']"),
        ({}, "nothing to change: give network (off, outbound)"),
        ({"network": "outbound", "loopback": True}, "loopback"),
    ],
)
def test_a_bad_network_value_is_refused_and_changes_nothing(admin, demo_app, body, message):
    ops = Operation.objects.count()

    response = admin.post("apps/demo/network", body)

    assert response.status_code == 400, response.json()
    assert message in response.json()["error"]["message"]
    assert App.objects.get().network == "off"
    assert Operation.objects.count() == ops


@pytest.mark.django_db
def test_an_unknown_app_is_a_404(admin, demo_app):
    response = admin.post("apps/nope/network", {"network": "outbound"})

    assert response.status_code == 404
    assert App.objects.get().network == "off"
