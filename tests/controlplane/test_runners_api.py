from __future__ import annotations

import pytest

from dashboard.controlplane.models import Operation

pytestmark = pytest.mark.django_db


def test_listing_runners_with_the_runtime_down_says_it_is_unavailable(viewer, demo_app):
    response = viewer.get("apps/demo/runners")
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "runtime_unavailable"
    assert error["message"].startswith("runtime unavailable")


def test_reading_logs_with_the_runtime_down_says_it_is_unavailable(viewer, demo_app):
    assert viewer.get("apps/demo/logs").status_code == 503


def test_logs_of_an_unknown_revision_are_a_404(viewer, demo_app):
    assert viewer.get("apps/demo/logs", {"revision": "00000000"}).status_code == 404


def test_a_log_tail_out_of_range_is_refused(viewer, demo_app):
    assert viewer.get("apps/demo/logs", {"tail": 0}).status_code == 400


def test_stopping_a_runner_with_the_runtime_down_is_503_and_records_nothing(deployer, demo_app):
    response = deployer.post("runners/r-1/stop", {"replace": True})
    assert response.status_code == 503
    assert not Operation.objects.exists()


def test_a_viewer_may_not_stop_a_runner(viewer):
    assert viewer.post("runners/r-1/stop").status_code == 403
