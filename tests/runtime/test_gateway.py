"""The gateway: routing to the Current revision, cold starts, queueing and its errors."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from dashboard.controlplane.events import publish_app_changed
from dashboard.controlplane.models import App, RevisionStatus
from tests.conftest import wait_until
from tests.runtime.conftest import deploy_example

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_routes_to_the_current_revision_and_follows_an_alias_switch(runtime):
    v1 = deploy_example("svc", "fast")
    app = App.objects.get(name="svc")
    v2 = deploy_example(app, "fast", current=False, replace={'"fast v1"': '"fast v2"'})
    assert runtime.gateway("POST", "/svc/", json={"n": 1}).json() == {
        "version": "fast v1",
        "echo": {"n": 1},
    }

    app.current_revision = v2
    app.save()
    publish_app_changed("svc")  # Only the announcement: no sync call, no timer.

    wait_until(
        lambda: runtime.gateway("POST", "/svc/", json={}).json()["version"] == "fast v2",
        what="the gateway to route to v2",
    )
    old = [r for r in runtime.runners("svc") if r["revision"] == str(v1.id)]
    assert old and all(r["state"] in ("DRAINING", "TERMINATING", "TERMINATED") for r in old)


def test_a_cold_start_makes_the_request_wait_rather_than_fail(runtime):
    deploy_example("cold", "slow_setup", replace={"SETUP_SECONDS = 3.0": "SETUP_SECONDS = 1.5"})
    assert runtime.runners("cold") == []
    response = runtime.gateway("GET", "/cold/")
    assert response.status_code == 200
    assert response.json() == {"loaded_after": 1.5}


def test_query_strings_reach_a_get_endpoint(runtime):
    deploy_example("q", "demo")
    assert runtime.gateway("GET", "/q/", params={"name": "Ada"}).json() == {
        "message": "Hello, Ada!",
        "version": "1",
    }


def test_max_multiplexing_is_never_exceeded_and_extra_requests_queue(runtime):
    deploy_example("mux", "slow_endpoint", max_multiplexing=2, max_concurrency=1)
    with ThreadPoolExecutor(6) as pool:
        results = list(
            pool.map(lambda _: runtime.gateway("POST", "/mux/", json={"seconds": 0.5}), range(6))
        )
    assert [r.status_code for r in results] == [200] * 6
    assert max(r.json()["concurrent"] for r in results) <= 2
    assert len({r.headers["X-Switchboard-Runner"] for r in results}) == 1


def test_an_unknown_app_is_404(runtime):
    response = runtime.gateway("GET", "/nope/")
    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "app_not_found", "message": "app 'nope' not found"}
    }
    response = runtime.gateway("GET", "/")
    assert response.status_code == 404
    assert "no app in the path" in response.json()["error"]["message"]


def test_an_unknown_endpoint_of_a_known_app_is_a_json_404_naming_the_endpoints(runtime):
    deploy_example("paths", "fast")
    response = runtime.gateway("GET", "/paths/nope")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "endpoint_not_found"
    assert error["message"] == "no endpoint /nope; this app serves /, /pid"


def test_an_app_without_a_current_revision_is_503(runtime):
    App.objects.create(name="empty", auth_mode="public")
    response = runtime.gateway("GET", "/empty/")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "no_current_revision"


def test_a_suspended_current_revision_answers_503_app_suspended(runtime):
    deploy_example("paused", "fast", status=RevisionStatus.SUSPENDED)
    response = runtime.gateway("GET", "/paused/")
    assert response.status_code == 503
    assert response.json()["error"] == {"code": "app_suspended", "message": "app suspended"}


def test_a_request_longer_than_request_timeout_is_aborted_with_504(runtime):
    deploy_example("late", "slow_endpoint", request_timeout=1)
    response = runtime.gateway("POST", "/late/", json={"seconds": 5})
    assert response.status_code == 504
    error = response.json()["error"]
    assert error["code"] == "request_timeout"
    assert "request_timeout=1s" in error["message"]


def test_a_handler_error_is_a_500_with_a_request_id_and_nothing_of_the_error(runtime):
    deploy_example("oops", "demo", replace={'str(data.get("name", "world"))': "data['missing']"})
    response = runtime.gateway("POST", "/oops/", json={})
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "handler_error" and len(error["request_id"]) == 32
    assert "KeyError" not in response.text and "missing" not in response.text


def test_a_revision_whose_setup_fails_answers_503_with_the_reason(runtime):
    deploy_example("bad", "broken_setup")
    response = runtime.gateway("GET", "/bad/")
    assert response.status_code == 503
    assert "weights.bin is missing" in response.json()["error"]["message"]
