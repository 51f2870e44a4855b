from __future__ import annotations

import pytest

from dashboard import httpclient
from dashboard.controlplane import runtime_client
from dashboard.controlplane.models import Operation

pytestmark = pytest.mark.django_db


def test_listing_runners_with_the_runtime_down_says_it_is_unavailable(viewer, demo_app):
    response = viewer.get("apps/demo/runners")
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "runtime_unavailable"
    assert error["message"].startswith("runtime unavailable")


def test_reading_logs_with_the_runtime_down_says_it_is_unavailable(viewer, demo_app):
    response = viewer.get("apps/demo/logs")
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "runtime_unavailable"
    assert error["message"].startswith("runtime unavailable: cannot connect to")


def test_logs_of_an_unknown_revision_are_a_404(viewer, demo_app):
    assert viewer.get("apps/demo/logs", {"revision": "00000000"}).status_code == 404


def test_a_log_tail_out_of_range_is_refused(viewer, demo_app):
    assert viewer.get("apps/demo/logs", {"tail": 0}).status_code == 400


def test_stopping_a_runner_with_the_runtime_down_is_503_and_records_nothing(deployer, demo_app):
    response = deployer.post("runners/r-1/stop", {"replace": True})
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "runtime_unavailable"
    assert error["message"].startswith("runtime unavailable: cannot connect to")
    assert not Operation.objects.exists()


@pytest.mark.parametrize(
    ("failure", "status", "code", "message"),
    [
        (
            httpclient.Unavailable("runtime", "cannot connect to x"),
            503,
            "runtime_unavailable",
            "runtime unavailable: cannot connect to x",
        ),
        (runtime_client.RuntimeError_(404, "no runner 'r-1'"), 404, "not_found", "no runner 'r-1'"),
        (
            runtime_client.RuntimeError_(500, "boom"),
            503,
            "runtime_error",
            "the runtime refused: boom",
        ),
    ],
)
def test_a_failed_runtime_call_is_said_one_way(failure, status, code, message):
    said = runtime_client.error(failure)
    assert (said.status, said.code, said.message) == (status, code, message)


def test_a_viewer_may_not_stop_a_runner(viewer):
    assert viewer.post("runners/r-1/stop").status_code == 403
