"""The autoscaler: how many runners each app's Current revision should have, right now.

Per app, from the alias's live settings (App.settings):
- warm floor = max(min_concurrency, busy + spare), where spare = max(concurrency_buffer,
  ceil(busy × concurrency_buffer_perc / 100)); with nothing busy this is
  max(min_concurrency, concurrency_buffer);
- requests queued longer than scaling_delay add the runners their slots need, and a
  request with no runner at all warm or starting starts one at once (a cold start);
- never more than max_concurrency;
- a runner idle longer than keep_alive is stopped, down to the floor; the ones that
  would be are shown with their `idle_shutdown_at`.

The arithmetic is in pure functions of the settings and a `Load` (warm_floor, desired,
idle_shutdowns), so every setting can be checked without runners
(tests/properties/test_autoscaler_target.py); the Autoscaler applies their answers.

It wakes when the supervisor signals (a request queued, a runner changed state) and at
least every TICK seconds for the keep_alive clocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings as conf

from dashboard.runner_states import ACTIVE, READY, STARTING, RunnerState
from dashboard.runtime.routing import AppRoute, RevisionInfo
from dashboard.runtime.supervisor import Runner, Supervisor, utcnow

log = logging.getLogger("switchboard.runtime")
TICK = 0.25
# A runner an operation started on a revision that is not Current yet (the target of a
# rolling switch, healthy and waiting for the alias to move) is stopped after idling this
# long, or keep_alive if that is longer: a short keep_alive must not retire it before the
# switch lands. Every other runner of a non-Current revision (an old one called by its
# URL, app@rev) stops after its own keep_alive, min_concurrency notwithstanding, so an
# old revision never keeps runners alive (Knative's trap).
NOT_CURRENT_GRACE = 60.0


@dataclass(frozen=True)
class Load:
    """What one app's Current revision has and is asked for, at one moment."""

    runners: int  # active runners (starting or ready), not stopping, not in crash backoff
    ready: int  # of which ready (IDLE or RUNNING)
    busy: int  # of which ready with a request in flight
    starting: int  # of which starting (PENDING, SETUP)
    queued: int  # requests waiting for a runner
    waited: float  # seconds the oldest of them has waited


def warm_floor(s: Mapping[str, Any], busy: int) -> int:
    """The runners kept warm: max(min_concurrency, busy + spare), at most max_concurrency."""
    spare = max(
        int(s["concurrency_buffer"]), math.ceil(busy * int(s["concurrency_buffer_perc"]) / 100)
    )
    return min(max(int(s["min_concurrency"]), busy + spare), int(s["max_concurrency"]))


def desired(s: Mapping[str, Any], load: Load) -> int:
    """How many runners the Current revision should have now (the autoscaler's target)."""
    mux = max(int(s["max_multiplexing"]), 1)
    target = warm_floor(s, load.busy)
    if load.queued:
        if not load.ready and not load.starting:
            target = max(target, 1)  # A cold start does not wait for scaling_delay.
        if load.waited >= float(s["scaling_delay"]):
            uncovered = max(load.queued - load.starting * mux, 0)
            target = max(target, load.runners + math.ceil(uncovered / mux))
    return min(target, int(s["max_concurrency"]))


def idle_shutdowns(
    idle_since: Sequence[datetime],
    runners: int,
    floor: int,
    keep_alive: float,
    now: datetime,
    queued: int,
) -> list[tuple[datetime | None, bool]]:
    """For idle runners, longest idle first: (when keep_alive retires it, stop it now?).

    Only the runners above the floor are retired, the longest idle first; none while
    requests are queued. A runner the floor keeps gets no shutdown time.
    """
    removable = max(runners - floor, 0)
    plan: list[tuple[datetime | None, bool]] = []
    for index, since in enumerate(idle_since):
        if index >= removable:
            plan.append((None, False))
            continue
        at = since + timedelta(seconds=keep_alive)
        plan.append((at, now >= at and not queued))
    return plan


class Autoscaler:
    def __init__(self, supervisor: Supervisor, routes: dict[str, AppRoute]):
        self.supervisor = supervisor
        self.routes = routes

    async def run(self) -> None:
        wake = self.supervisor.wake
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), TICK)
            wake.clear()
            try:
                self.tick()
            except Exception:
                log.exception("autoscaler tick failed")

    def tick(self) -> None:
        sup = self.supervisor
        sup.purge_gone()
        names = set(self.routes) | {r.app for r in sup.alive()} | set(sup.waiters)
        for name in names:
            self.scale(name)

    def scale(self, name: str) -> None:
        sup = self.supervisor
        route = self.routes.get(name)
        current = route.revision if route else None
        runners = [r for r in sup.alive() if r.app == name and not r.stopping]
        self._retire_not_current([r for r in runners if r.revision != current])
        if route is None or current is None:
            return
        s = route.settings
        # A runner waiting out a crash backoff holds no capacity: others may take its place.
        mine = [
            r
            for r in runners
            if r.revision == current and r.state in ACTIVE and r.state != RunnerState.CRASH_BACKOFF
        ]
        ready = [r for r in mine if r.state in READY]
        starting = [r for r in mine if r.state in STARTING]
        queued, waited = sup.queued(name)
        load = Load(
            runners=len(mine),
            ready=len(ready),
            busy=sum(1 for r in ready if r.in_flight > 0),
            starting=len(starting),
            queued=queued,
            waited=waited,
        )
        floor = warm_floor(s, load.busy)
        target = desired(s, load)
        if target > len(mine) and self._may_start(route):
            rev = RevisionInfo(
                id=current,
                app=name,
                status=route.revision_status or "",
                entrypoint=route.entrypoint,
                bundle_dir=route.bundle_dir,
                network=route.network,
            )
            for _ in range(target - len(mine)):
                sup.start(rev, route.settings)

        self._retire_idle(mine, floor, queued, float(s["keep_alive"]))

    def _may_start(self, route: AppRoute) -> bool:
        if route.revision_status == "suspended":
            return False
        failed = self.supervisor.failed_at.get(route.revision)
        # A revision whose runner just failed setup() is not retried in a tight loop.
        return not failed or time.monotonic() - failed[0] >= conf.RUNNER_BACKOFF_STEP

    def _retire_idle(self, mine: list[Runner], floor: int, queued: int, keep_alive: float) -> None:
        idle = sorted((r for r in mine if r.state == RunnerState.IDLE), key=lambda r: r.idle_since)
        plan = idle_shutdowns(
            [r.idle_since for r in idle], len(mine), floor, keep_alive, utcnow(), queued
        )
        for runner, (shutdown_at, stop) in zip(idle, plan, strict=True):
            runner.idle_shutdown_at = shutdown_at
            if stop:
                runner.note(f"idle for {keep_alive:g}s (keep_alive): stopping")
                self.supervisor.stop(runner)

    def _retire_not_current(self, others: list[Runner]) -> None:
        now = utcnow()
        for runner in others:
            if runner.state != RunnerState.IDLE:
                continue
            keep_alive = float(runner.settings["keep_alive"])
            grace = max(keep_alive, NOT_CURRENT_GRACE) if runner.for_switch else keep_alive
            runner.idle_shutdown_at = runner.idle_since + timedelta(seconds=grace)
            if now >= runner.idle_shutdown_at:
                runner.note(f"idle for {grace:g}s and not of the Current revision: stopping")
                self.supervisor.stop(runner)
