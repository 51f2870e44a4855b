"""Health figures: the gateway's per-revision traffic window (metrics.Traffic) on its own,
with a clock the tests move, and under real traffic through a live runtime."""

from __future__ import annotations

import sys

import pytest

from dashboard.runtime import metrics
from dashboard.runtime.metrics import BUCKETS, MAX_REVISIONS, WINDOW_SECONDS, Traffic
from tests.runtime.conftest import deploy_example

BOOM = {
    '    @endpoint("/pid", methods=("GET",))': (
        '    @endpoint("/boom", methods=("GET",))\n'
        "    def boom(self) -> dict:\n"
        '        raise RuntimeError("boom")\n\n'
        '    @endpoint("/pid", methods=("GET",))'
    )
}


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- the structure ------------------------------------------------------------------------


def test_it_counts_requests_and_5xx_answers_of_each_revision_apart():
    traffic = Traffic(Clock())
    for status in (200, 200, 200, 404, 500, 503):
        traffic.record("a", status, 0.010)
    traffic.record("b", 200, 0.002)
    a = traffic.figures("a")
    assert (a["requests"], a["errors_5xx"], a["error_rate"]) == (6, 2, round(2 / 6, 4))
    assert a["window_s"] == WINDOW_SECONDS
    assert traffic.figures("b")["requests"] == 1
    assert traffic.figures("b")["errors_5xx"] == 0


def test_a_revision_without_traffic_has_zero_requests_and_no_percentiles():
    figures = Traffic(Clock()).figures("never-called")
    assert figures == {
        "requests": 0,
        "errors_5xx": 0,
        "error_rate": 0.0,
        "p50_ms": None,
        "p99_ms": None,
        "window_s": WINDOW_SECONDS,
    }


def test_percentiles_are_within_one_bin_above_the_true_value_and_p50_is_at_most_p99():
    traffic = Traffic(Clock())
    latencies_ms = [1.0] * 90 + [50.0] * 9 + [400.0]
    for ms in latencies_ms:
        traffic.record("a", 200, ms / 1000)
    figures = traffic.figures("a")
    # Never understated, and at most one bin (2^(1/4)) high.
    assert 1.0 <= figures["p50_ms"] <= 1.0 * 2**0.25
    assert 50.0 <= figures["p99_ms"] <= 50.0 * 2**0.25
    assert figures["p50_ms"] <= figures["p99_ms"]


def test_a_percentile_never_exceeds_the_slowest_request():
    traffic = Traffic(Clock())
    traffic.record("a", 200, 0.0123)
    figures = traffic.figures("a")
    assert figures["p50_ms"] == figures["p99_ms"] == 12.3


def test_latencies_outside_the_histogram_land_in_its_end_bins():
    traffic = Traffic(Clock())
    traffic.record("a", 200, 0.0)
    traffic.record("a", 504, 10 * 86_400.0)  # Longer than any request_timeout allows.
    figures = traffic.figures("a")
    assert figures["p50_ms"] == metrics.MIN_MS
    assert figures["p99_ms"] == round(metrics.edge(metrics.BINS - 1), 2)


def test_old_buckets_age_out_of_the_window_as_the_clock_moves():
    clock = Clock()
    traffic = Traffic(clock)
    for _ in range(5):
        traffic.record("a", 500, 0.5)
    clock.now += WINDOW_SECONDS / 2
    for _ in range(3):
        traffic.record("a", 200, 0.001)
    assert traffic.figures("a")["requests"] == 8
    assert traffic.figures("a")["errors_5xx"] == 5

    clock.now += WINDOW_SECONDS / 2 + metrics.BUCKET_SECONDS  # The first five are 5 min old.
    figures = traffic.figures("a")
    assert (figures["requests"], figures["errors_5xx"]) == (3, 0)
    assert figures["p99_ms"] <= 0.01 * 2**0.25 * 1000  # The slow 5xx are gone from p99 too.
    assert list(traffic.active()) == ["a"]

    clock.now += WINDOW_SECONDS
    assert traffic.figures("a")["requests"] == 0
    assert list(traffic.active()) == []


def test_a_bucket_reused_after_a_full_turn_of_the_ring_starts_empty():
    clock = Clock()
    traffic = Traffic(clock)
    traffic.record("a", 500, 1.0)
    clock.now += WINDOW_SECONDS  # The same slot of the ring, one turn later.
    traffic.record("a", 200, 0.001)
    figures = traffic.figures("a")
    assert (figures["requests"], figures["errors_5xx"]) == (1, 0)


def test_memory_is_bounded_whatever_the_traffic():
    clock = Clock()
    traffic = Traffic(clock)
    for second in range(3 * WINDOW_SECONDS):
        clock.now += 1
        for _ in range(20):
            traffic.record("busy", 200, 0.001 * (second % 97 + 1))
    ring = traffic.revisions["busy"].ring
    assert len(ring) == BUCKETS
    assert all(len(bucket.hist) == metrics.BINS for bucket in ring)
    # The window is the current bucket (partly filled) and the ones before it: 290–300 s.
    requests = traffic.figures("busy")["requests"]
    assert 20 * (WINDOW_SECONDS - metrics.BUCKET_SECONDS) < requests <= 20 * WINDOW_SECONDS
    # The size of one revision's figures does not grow with its traffic.
    size = sys.getsizeof(ring) + sum(sys.getsizeof(b.hist) for b in ring)
    assert size < 20 * 1024


def test_at_most_max_revisions_are_kept_idle_ones_pushed_out_first():
    clock = Clock()
    traffic = Traffic(clock)
    for i in range(MAX_REVISIONS):
        traffic.record(f"old-{i}", 200, 0.001)
    clock.now += WINDOW_SECONDS + metrics.BUCKET_SECONDS  # All of them are now idle.
    traffic.record("kept", 200, 0.001)
    assert len(traffic.revisions) == 1

    for i in range(MAX_REVISIONS + 50):
        clock.now += 0.01
        traffic.record(f"new-{i}", 200, 0.001)
        assert len(traffic.revisions) <= MAX_REVISIONS
    assert f"new-{MAX_REVISIONS + 49}" in traffic.revisions


# -- under real gateway traffic -----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_figures_move_under_real_traffic_through_the_gateway(runtime):
    revision = deploy_example("healthy", "fast", replace=BOOM)
    rev = str(revision.id)

    def figures() -> dict:
        response = runtime.admin("GET", "/metrics", params={"revision": rev})
        assert response.status_code == 200, response.text
        return response.json()["revisions"][rev]

    before = figures()
    assert (before["requests"], before["errors_5xx"], before["p99_ms"]) == (0, 0, None)

    for _ in range(17):
        assert runtime.gateway("POST", "/healthy/", json={"n": 1}).status_code == 200
    for _ in range(3):
        assert runtime.gateway("GET", "/healthy/boom").status_code == 500
    # A refusal before any revision serves (an unknown app) is nobody's traffic.
    assert runtime.gateway("GET", "/nobody/").status_code == 404

    after = figures()
    assert after["requests"] == 20
    assert after["errors_5xx"] == 3
    assert after["error_rate"] == 0.15
    assert 0 < after["p50_ms"] <= after["p99_ms"]
    assert after["window_s"] == 300
    # The runner that served them is warm and idle now.
    assert after["runners"] == {"ready": 1, "busy": 0, "starting": 0, "failing": 0}


@pytest.mark.django_db(transaction=True)
def test_without_a_filter_it_lists_every_revision_with_traffic_or_runners(runtime):
    revision = deploy_example("listed", "fast")
    assert runtime.gateway("POST", "/listed/", json={}).status_code == 200
    answer = runtime.admin("GET", "/metrics").json()["revisions"]
    assert answer[str(revision.id)]["requests"] == 1


@pytest.mark.django_db(transaction=True)
def test_a_bad_revision_filter_is_refused_with_a_message(runtime):
    response = runtime.admin("GET", "/metrics", params={"revision": "not-a-uuid"})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "revision must be a revision id, got 'not-a-uuid'"
    )
    many = [f"{i:08x}-0000-0000-0000-000000000000" for i in range(101)]
    response = runtime.admin("GET", "/metrics", params={"revision": many})
    assert response.status_code == 400
    assert "at most 100 revisions" in response.json()["error"]["message"]


def test_the_metrics_need_the_admin_secret(runtime):
    import httpx

    response = httpx.get(runtime.admin_url + "/metrics")
    assert response.status_code == 401


def test_runners_are_summarised_as_ready_busy_starting_and_failing(tmp_path):
    from dashboard.runtime.admin_api import runner_counts
    from dashboard.runtime.supervisor import Runner

    states = ["IDLE", "IDLE", "RUNNING", "PENDING", "SETUP", "CRASH_BACKOFF", "FAILED"]
    states += ["DRAINING", "TERMINATING", "TERMINATED"]  # Serving nothing new: not counted.
    runners = [
        Runner(f"r-{i:08x}", "a", "rev", tmp_path, "app.py::A", {}, state=state)
        for i, state in enumerate(states)
    ]
    assert runner_counts(runners) == {"ready": 2, "busy": 1, "starting": 2, "failing": 2}
    assert runner_counts([]) == {"ready": 0, "busy": 0, "starting": 0, "failing": 0}
