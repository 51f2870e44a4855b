"""Properties of the autoscaler's target (DESIGN.md section 5), over generated settings and loads.

The autoscaler keeps at least min_concurrency (or the buffer, whichever is higher) warm,
never exceeds max_concurrency, starts runners when requests queue longer than
scaling_delay, and stops runners idle for keep_alive. `autoscaler.desired`,
`warm_floor` and `idle_shutdowns` are the pure functions the runtime's autoscaler calls on
every tick; these tests check them for every setting and load hypothesis can find.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from dashboard.runtime.autoscaler import Load, desired, idle_shutdowns, warm_floor

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@st.composite
def tunables(draw) -> dict:
    """The alias's settings the autoscaler reads, valid per DESIGN section 3."""
    ceiling = draw(st.integers(1, 50))
    return {
        "max_concurrency": ceiling,
        "min_concurrency": draw(st.integers(0, ceiling)),
        "concurrency_buffer": draw(st.integers(0, ceiling)),
        "concurrency_buffer_perc": draw(st.integers(0, 100)),
        "scaling_delay": draw(st.integers(0, 3600)),
        "max_multiplexing": draw(st.integers(1, 8)),
        "keep_alive": draw(st.integers(0, 86400)),
    }


@st.composite
def loads(draw, queued: st.SearchStrategy[int] | None = None) -> Load:
    ready = draw(st.integers(0, 60))
    starting = draw(st.integers(0, 10))
    return Load(
        runners=ready + starting,
        ready=ready,
        busy=draw(st.integers(0, ready)),
        starting=starting,
        queued=draw(queued if queued is not None else st.integers(0, 200)),
        waited=draw(st.floats(0, 7200, allow_nan=False)),
    )


@given(tunables(), loads())
def test_the_target_is_between_the_warm_floor_and_max_concurrency(s, load):
    target = desired(s, load)
    floor = warm_floor(s, load.busy)
    assert min(s["min_concurrency"], s["max_concurrency"]) <= floor <= target
    assert target <= s["max_concurrency"]


@given(tunables(), loads(queued=st.just(0)))
def test_with_nothing_queued_the_target_is_busy_plus_the_buffer_or_the_minimum(s, load):
    spare = max(s["concurrency_buffer"], math.ceil(load.busy * s["concurrency_buffer_perc"] / 100))
    expected = min(max(s["min_concurrency"], load.busy + spare), s["max_concurrency"])
    assert desired(s, load) == expected


@given(tunables(), loads(), st.integers(0, 50))
def test_a_larger_buffer_never_lowers_the_target(s, load, more):
    bigger = {**s, "concurrency_buffer": min(s["concurrency_buffer"] + more, s["max_concurrency"])}
    assert desired(bigger, load) >= desired(s, load)


@given(tunables(), loads(), st.integers(0, 100))
def test_a_larger_buffer_percentage_never_lowers_the_target(s, load, more):
    bigger = {**s, "concurrency_buffer_perc": min(s["concurrency_buffer_perc"] + more, 100)}
    assert desired(bigger, load) >= desired(s, load)


@given(tunables(), loads(queued=st.just(0)))
def test_with_nothing_busy_the_buffer_is_kept_warm(s, load):
    idle = Load(load.runners, load.ready, 0, load.starting, 0, 0.0)
    assert desired(s, idle) == max(s["min_concurrency"], s["concurrency_buffer"])


@given(tunables(), loads())
def test_the_percentage_keeps_that_share_of_the_busy_runners_spare(s, load):
    wanted = load.busy + math.ceil(load.busy * s["concurrency_buffer_perc"] / 100)
    assert desired(s, load) >= min(wanted, s["max_concurrency"])


@given(tunables(), loads(queued=st.integers(1, 200)))
def test_a_queue_younger_than_scaling_delay_adds_no_runner_unless_none_is_warm(s, load):
    younger = Load(
        load.runners,
        load.ready,
        load.busy,
        load.starting,
        load.queued,
        waited=max(s["scaling_delay"] - 0.5, 0.0) if s["scaling_delay"] else 0.0,
    )
    floor = warm_floor(s, load.busy)
    if s["scaling_delay"] == 0:
        return  # No delay: every queued request may add a runner at once (next test).
    if load.ready or load.starting:
        assert desired(s, younger) == floor
    else:
        assert desired(s, younger) == max(floor, 1)  # A cold start never waits.


@given(tunables(), loads(queued=st.integers(1, 200)), st.floats(0, 3600, allow_nan=False))
def test_a_queue_older_than_scaling_delay_gets_the_runners_its_requests_need(s, load, extra):
    older = Load(
        load.runners,
        load.ready,
        load.busy,
        load.starting,
        load.queued,
        waited=s["scaling_delay"] + extra,
    )
    mux = s["max_multiplexing"]
    uncovered = max(load.queued - load.starting * mux, 0)
    needed = load.runners + math.ceil(uncovered / mux)
    assert desired(s, older) == min(
        max(warm_floor(s, load.busy), needed, 1 if not load.runners else 0),
        s["max_concurrency"],
    )


@given(tunables(), loads(queued=st.integers(1, 200)))
def test_waiting_longer_never_lowers_the_target(s, load):
    later = Load(load.runners, load.ready, load.busy, load.starting, load.queued, load.waited + 1)
    assert desired(s, later) >= desired(s, load)


@st.composite
def idle_runners(draw):
    runners = draw(st.integers(0, 20))
    idle = draw(st.integers(0, runners))
    ages = sorted(draw(st.lists(st.floats(0, 200000), min_size=idle, max_size=idle)), reverse=True)
    # Longest idle first, as the autoscaler passes them.
    return runners, [NOW - timedelta(seconds=age) for age in ages]


@given(idle_runners(), st.integers(0, 20), st.integers(0, 86400), st.integers(0, 5))
def test_keep_alive_retires_only_runners_idle_that_long_above_the_floor(
    runners_and_idle, floor, keep_alive, queued
):
    runners, idle_since = runners_and_idle
    plan = idle_shutdowns(idle_since, runners, floor, keep_alive, NOW, queued)

    assert len(plan) == len(idle_since)
    stopped = [since for since, (_, stop) in zip(idle_since, plan, strict=True) if stop]
    # Never below the floor, never while requests wait.
    assert len(stopped) <= max(runners - floor, 0)
    assert not (queued and stopped)
    for since, (at, stop) in zip(idle_since, plan, strict=True):
        if at is not None:
            assert at == since + timedelta(seconds=keep_alive)
        # Stopped exactly when it has idled keep_alive and is not kept by the floor.
        assert stop == (
            at is not None and NOW - since >= timedelta(seconds=keep_alive) and not queued
        )
    # The longest idle are the ones retired first; the rest the floor keeps get no time.
    kept = [at for at, _ in plan[max(runners - floor, 0) :]]
    assert all(at is None for at in kept)


@given(idle_runners(), st.integers(0, 20), st.integers(1, 86400))
def test_a_runner_idle_for_less_than_keep_alive_is_never_stopped(
    runners_and_idle, floor, keep_alive
):
    runners, idle_since = runners_and_idle
    plan = idle_shutdowns(idle_since, runners, floor, keep_alive, NOW, 0)
    for since, (_, stop) in zip(idle_since, plan, strict=True):
        if NOW - since < timedelta(seconds=keep_alive):
            assert not stop
