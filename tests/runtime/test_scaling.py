"""The autoscaler: warm floor, idle shutdown after keep_alive, and the max_concurrency ceiling."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import wait_until
from tests.runtime.conftest import deploy_example, warm_runners

pytestmark = pytest.mark.django_db(transaction=True)


def test_min_concurrency_keeps_runners_warm_without_traffic(runtime):
    deploy_example("warm", "fast", min_concurrency=2)
    runners = warm_runners(runtime, "warm", 2)
    # The floor protects them: none has an idle shutdown time.
    assert [r["idle_shutdown_at"] for r in runners] == [None, None]


def test_a_runner_idle_longer_than_keep_alive_is_stopped(runtime):
    deploy_example("nap", "fast", keep_alive=1)
    served = runtime.gateway("POST", "/nap/", json={})
    runner_id = served.headers["X-Switchboard-Runner"]
    idle = wait_until(
        lambda: (r := runtime.runner(runner_id))["idle_shutdown_at"] and r,
        what="an idle shutdown time",
    )
    assert idle["idle_shutdown_at"] > idle["idle_since"]
    assert runtime.wait_state(runner_id, "TERMINATED")["state"] == "TERMINATED"


def test_queued_requests_start_more_runners_up_to_max_concurrency(runtime):
    deploy_example("burst", "slow_endpoint", max_concurrency=2, keep_alive=30)
    with ThreadPoolExecutor(6) as pool:
        results = list(
            pool.map(lambda _: runtime.gateway("POST", "/burst/", json={"seconds": 1}), range(6))
        )
    assert [r.status_code for r in results] == [200] * 6
    assert all(r.json()["concurrent"] == 1 for r in results)
    started = runtime.runners("burst")
    assert len(started) == 2
