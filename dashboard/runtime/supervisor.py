"""The supervisor: runner lifecycles, their states, and the slots the gateway takes on them.

The states and their sets are dashboard/runner_states.py's; a CRASH_BACKOFF runner is
restarted after min(step × consecutive crashes, cap).

Each runner has one lifecycle task that owns its process: it boots it, waits for it to
end, and decides between TERMINATED (a stop or kill was asked for) and CRASH_BACKOFF.
stop() and kill() only ask; the lifecycle task records the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings as conf

from dashboard.runner_states import ACTIVE, GONE, READY, RunnerState
from dashboard.runtime.backend import RunnerBackend, RunnerProcess, RunnerSpec
from dashboard.runtime.routing import AppRoute, RevisionInfo
from dashboard.runtime.sandboxed import SOCKET_NAME, remove
from dashboard.runtime.upstream import UpstreamError, UpstreamPool

log = logging.getLogger("switchboard.runtime")

# How long teardown() may take after SIGTERM before the runner is killed.
TEARDOWN_BOUND = 30.0
# Gone runners stay listed this long, so a caller waiting for "gone" can see the end.
KEEP_GONE_FOR = 120.0


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def crash_delay(crashes: int) -> float:
    """Seconds before restarting a runner after its `crashes`-th crash in a row.

    A runner that crashed once is restarted at once (a kill, an OOM); only one that keeps
    crashing waits, longer each time, so a broken revision does not spin.
    """
    if crashes <= 1:
        return 0.0
    return min(conf.RUNNER_BACKOFF_STEP * (crashes - 1), conf.RUNNER_BACKOFF_CAP)


class CrashLooping(Exception):
    """Every runner of the revision is waiting out a crash backoff; nothing can serve."""

    def __init__(self, reason: str, retry_after: float):
        self.reason = reason
        self.retry_after = retry_after
        super().__init__(reason)


class StartFailed(Exception):
    """A queued request's revision could not start a runner."""


@dataclass(eq=False)
class Runner:
    id: str
    app: str
    revision: str
    bundle_dir: Path
    entrypoint: str
    settings: dict[str, Any]
    network: str = "off"  # The app's outbound network when it started (sandboxed.py).
    state: RunnerState = RunnerState.PENDING
    in_flight: int = 0
    pid: int | None = None
    started_at: datetime = field(default_factory=utcnow)
    ready_at: datetime | None = None
    idle_since: datetime | None = None
    idle_shutdown_at: datetime | None = None
    restarts: int = 0
    crashes: int = 0
    restart_at: float = 0.0  # Monotonic: when a runner in CRASH_BACKOFF starts again.
    error: str = ""
    stopping: bool = False
    # Started by an operation (start_keyed: a rolling switch's target, proved healthy
    # before the alias moves): the autoscaler gives it a grace while it is not Current.
    for_switch: bool = False
    ended_at: float | None = None  # Monotonic: when to forget a gone runner.
    stopped_at: datetime | None = None  # Wall clock: shown as its lifetime's end.
    process: RunnerProcess | None = None
    upstream: UpstreamPool | None = None  # The gateway's connections to it, once ready.
    slot_limit: int | None = None  # The backend's own limit, when not max_multiplexing.
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    stop_requested: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def crash_looping(self) -> bool:
        """Crashed again after being restarted at once: now waiting out a backoff."""
        return self.state == RunnerState.CRASH_BACKOFF and self.crashes > 1

    @property
    def max_multiplexing(self) -> int:
        return self.slot_limit or int(self.settings["max_multiplexing"])

    @property
    def socket_path(self) -> Path:
        # A folder of its own: the one host folder its sandbox may write (sandboxed.py).
        return conf.VAR_DIR / "run" / self.id / SOCKET_NAME

    @property
    def log_path(self) -> Path:
        return log_path(self.app, self.revision, self.id)

    def note(self, text: str) -> None:
        """Write the runtime's own account of this runner into the runner's log."""
        with open(self.log_path, "a") as f:
            f.write(f"[runtime {utcnow():%Y-%m-%d %H:%M:%S}] {text}\n")

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "app": self.app,
            "revision": self.revision,
            "state": self.state,
            "in_flight": self.in_flight,
            "pid": self.pid,
            "started_at": iso(self.started_at),
            "ready_at": iso(self.ready_at),
            "idle_since": iso(self.idle_since),
            "idle_shutdown_at": iso(self.idle_shutdown_at),
            "ended_at": iso(self.stopped_at),
            "restarts": self.restarts,
            "crash_looping": self.crash_looping,
            "error": self.error,
            "machine_type": self.settings["machine_type"],
        }


def log_path(app: str, revision: str, runner_id: str) -> Path:
    return conf.VAR_DIR / "logs" / app / revision / f"{runner_id}.log"


@dataclass(eq=False)
class Waiter:
    app: str
    future: asyncio.Future
    since: float = field(default_factory=time.monotonic)


class Supervisor:
    def __init__(self, backend: RunnerBackend, routes: dict[str, AppRoute]):
        self.backend = backend
        self.routes = routes  # The routing table's live dict: app name → AppRoute.
        self.runners: dict[str, Runner] = {}
        self.waiters: dict[str, deque[Waiter]] = defaultdict(deque)
        self.failed_at: dict[str, tuple[float, str]] = {}  # revision → (when, why)
        self.wake = asyncio.Event()  # Tells the autoscaler to look now.
        self._start_keys: dict[str, list[str]] = {}
        self._tasks: set[asyncio.Task] = set()

    # -- starting and lifecycles ------------------------------------------------------

    def start(self, rev: RevisionInfo, settings: dict[str, Any]) -> Runner:
        runner = Runner(
            id=f"r-{secrets.token_hex(4)}",
            app=rev.app,
            revision=rev.id,
            bundle_dir=rev.bundle_dir,
            entrypoint=rev.entrypoint,
            settings=dict(settings),
            network=rev.network,
        )
        self.runners[runner.id] = runner
        runner.log_path.parent.mkdir(parents=True, exist_ok=True)
        runner.note(f"runner {runner.id} of {rev.app} revision {rev.id} created")
        self._spawn(self._lifecycle(runner))
        return runner

    def start_keyed(
        self, rev: RevisionInfo, settings: dict[str, Any], count: int, key: str
    ) -> list[Runner]:
        """Start `count` runners, or return the ones an earlier call with this key started."""
        if key and key in self._start_keys:
            return [self.runners[i] for i in self._start_keys[key] if i in self.runners]
        started = [self.start(rev, settings) for _ in range(count)]
        if key:
            self._start_keys[key] = [r.id for r in started]
            for runner in started:
                runner.for_switch = True
        return started

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _lifecycle(self, runner: Runner) -> None:
        try:
            while await self._boot(runner):
                code = await runner.process.wait()
                self._close_upstream(runner)
                if runner.stopping:
                    runner.note(f"process ended (exit code {code})")
                    self._end(runner, RunnerState.TERMINATED)
                    return
                runner.crashes += 1
                delay = crash_delay(runner.crashes)
                when = f"in {delay:g}s" if delay else "now"
                runner.error = f"process exited with code {code}; restarting {when}"
                runner.note(f"crashed: {runner.error}")
                runner.restart_at = time.monotonic() + delay
                self._set_state(runner, RunnerState.CRASH_BACKOFF)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(runner.stop_requested.wait(), delay)
                if runner.stopping:
                    self._end(runner, RunnerState.TERMINATED)
                    return
                if delay and self._replaced(runner):
                    runner.note("not restarted: other runners took its place during the backoff")
                    self._end(runner, RunnerState.TERMINATED)
                    return
                runner.restarts += 1
                runner.note(f"restart #{runner.restarts}")
        except asyncio.CancelledError:
            if runner.process:
                runner.process.kill()
            raise
        except Exception as exc:
            log.exception("runner %s lifecycle failed", runner.id)
            if runner.process:
                runner.process.kill()
            runner.error = f"runtime error: {exc}"
            self._end(runner, RunnerState.FAILED)

    async def _boot(self, runner: Runner) -> bool:
        """Start the process and wait until it is ready; False when it never got there."""
        self._set_state(runner, RunnerState.PENDING)
        spec = RunnerSpec(
            runner_id=runner.id,
            app=runner.app,
            revision=runner.revision,
            bundle_dir=runner.bundle_dir,
            entrypoint=runner.entrypoint,
            socket_path=runner.socket_path,
            log_path=runner.log_path,
            max_multiplexing=int(runner.settings["max_multiplexing"]),
            machine_type=runner.settings["machine_type"],
            network=runner.network,
            settings=runner.settings,
        )
        runner.process = process = await self.backend.start(spec)
        runner.pid = process.pid
        runner.note(f"process {process.pid} started; running setup()")
        self._set_state(runner, RunnerState.SETUP)
        timeout = float(runner.settings["startup_timeout"])
        ready = asyncio.ensure_future(process.ready_message())
        stop = asyncio.ensure_future(runner.stop_requested.wait())
        done, _ = await asyncio.wait({ready, stop}, timeout=timeout, return_when="FIRST_COMPLETED")
        stop.cancel()
        if runner.stopping:
            ready.cancel()
            process.kill()
            await process.wait()
            runner.note("stopped during setup()")
            self._end(runner, RunnerState.TERMINATED)
            return False
        if ready not in done:
            ready.cancel()
            return await self._fail(
                runner, f"setup() did not finish within startup_timeout={timeout:g}s"
            )
        message = ready.result()
        if message != "ready":
            message = message.removeprefix("setup failed: ")
            if not message:
                message = f"the runner exited during setup (exit code {await process.wait()})"
            return await self._fail(runner, message)
        # A backend whose runner is reached otherwise (Ray: Serve's proxy) says how, and
        # how many requests it takes at once.
        self._follow_settings(runner)
        if hasattr(process, "upstream"):
            runner.upstream = process.upstream(runner.max_multiplexing)
        else:
            runner.upstream = UpstreamPool(runner.socket_path, runner.max_multiplexing)
        # Invariant 3: the pipe said ready; one health call confirms it serves.
        try:
            async with asyncio.timeout(10):
                response = await runner.upstream.request("GET", "/_health")
            healthy = response.status == 200
            problem = f"answered HTTP {response.status}"
        except (UpstreamError, OSError) as exc:  # TimeoutError is an OSError.
            healthy, problem = False, f"{type(exc).__name__}: {exc}"
        if not healthy:
            self._close_upstream(runner)
            return await self._fail(runner, f"setup() finished but /_health failed: {problem}")
        runner.ready_at = utcnow()
        runner.pid = process.pid  # The sandboxed Python process, which surely exists now.
        runner.error = ""
        self.failed_at.pop(runner.revision, None)
        runner.note("ready")
        self._set_state(runner, RunnerState.IDLE)
        return True

    async def _fail(self, runner: Runner, reason: str) -> bool:
        runner.error = reason
        runner.note(f"FAILED: {reason}")
        if runner.process:
            runner.process.kill()
            await runner.process.wait()
        self.failed_at[runner.revision] = (time.monotonic(), reason)
        self._end(runner, RunnerState.FAILED)
        return False

    def _close_upstream(self, runner: Runner) -> None:
        if runner.upstream is not None:
            upstream, runner.upstream = runner.upstream, None
            upstream.close()

    # -- states -----------------------------------------------------------------------

    def _set_state(self, runner: Runner, state: RunnerState) -> None:
        runner.state = state
        runner.idle_since = utcnow() if state == RunnerState.IDLE else None
        if state != RunnerState.IDLE:
            runner.idle_shutdown_at = None
        self._notify(runner)
        if (
            state in (RunnerState.IDLE, RunnerState.PENDING)
            or state in GONE
            or state == RunnerState.CRASH_BACKOFF
        ):
            self.wake.set()
        if state in READY:
            self.dispatch(runner.app)
        if runner.crash_looping:
            self._fail_waiters_if_crash_looping(runner)

    def _notify(self, runner: Runner) -> None:
        event, runner.changed = runner.changed, asyncio.Event()
        event.set()

    def _end(self, runner: Runner, state: RunnerState) -> None:
        runner.ended_at = time.monotonic()
        runner.stopped_at = utcnow()
        remove(runner.socket_path.parent)
        self._set_state(runner, state)
        if state == RunnerState.FAILED:
            self._fail_waiters_if_hopeless(runner)

    def _fail_waiters_if_hopeless(self, runner: Runner) -> None:
        route = self.routes.get(runner.app)
        if route is None or route.revision != runner.revision:
            return
        if any(r.revision == runner.revision and r.state in ACTIVE for r in self.alive()):
            return
        queue = self.waiters.pop(runner.app, deque())
        for waiter in queue:
            if not waiter.future.done():
                waiter.future.set_exception(StartFailed(runner.error))

    def crash_looping(self, revision: str) -> CrashLooping | None:
        """Why nothing of `revision` can serve now, when all its runners are crash-looping."""
        mine = [r for r in self.alive() if r.revision == revision and not r.stopping]
        if not mine or not all(r.crash_looping for r in mine):
            return None
        soonest = min(mine, key=lambda r: r.restart_at)
        return CrashLooping(soonest.error, max(soonest.restart_at - time.monotonic(), 0.0))

    def _fail_waiters_if_crash_looping(self, runner: Runner) -> None:
        """Requests queued for a revision that cannot serve get their answer now, not after
        the backoff (which grows to minutes)."""
        route = self.routes.get(runner.app)
        if route is None or route.revision != runner.revision:
            return
        looping = self.crash_looping(runner.revision)
        if looping is None:
            return
        for waiter in self.waiters.pop(runner.app, deque()):
            if not waiter.future.done():
                waiter.future.set_exception(looping)

    def _replaced(self, runner: Runner) -> bool:
        """Whether the autoscaler started others while this one was in backoff, so that
        restarting it would exceed max_concurrency."""
        others = [
            r
            for r in self.alive()
            if r.revision == runner.revision
            and r is not runner
            and r.state != RunnerState.CRASH_BACKOFF
        ]
        return len(others) >= int(self._tunable(runner, "max_concurrency"))

    async def wait_for(self, runner: Runner, predicate, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate(runner):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(runner.changed.wait(), remaining)
            except TimeoutError:
                return predicate(runner)
        return True

    def alive(self) -> list[Runner]:
        return [r for r in self.runners.values() if r.state not in GONE]

    def of_revision(self, revision: str) -> list[Runner]:
        return [r for r in self.runners.values() if r.revision == revision]

    def purge_gone(self) -> None:
        cutoff = time.monotonic() - KEEP_GONE_FOR
        for runner_id in [
            r.id for r in self.runners.values() if r.ended_at and r.ended_at < cutoff
        ]:
            del self.runners[runner_id]

    # -- stopping ---------------------------------------------------------------------

    def stop(self, runner: Runner, *, replace: bool = False) -> None:
        """Graceful: no new work, in-flight requests finish (bounded), then teardown()."""
        if runner.state in GONE or runner.stopping:
            return
        runner.stopping = True
        self._spawn(self._stop(runner, replace))

    async def _stop(self, runner: Runner, replace: bool) -> None:
        if replace and runner.state in READY:
            rev = RevisionInfo(
                id=runner.revision,
                app=runner.app,
                status="",
                entrypoint=runner.entrypoint,
                bundle_dir=runner.bundle_dir,
                # The app's network now, as every new runner of it gets (sandboxed.py).
                network=route.network if (route := self.routes.get(runner.app)) else runner.network,
            )
            replacement = self.start(rev, runner.settings)
            runner.note(f"stopping once replacement {replacement.id} is ready")
            await self.wait_for(
                replacement,
                lambda r: r.state in READY or r.state in GONE,
                float(replacement.settings["startup_timeout"]) + 15,
            )
        runner.stop_requested.set()
        if runner.state not in READY:
            return  # Booting or backing off: the lifecycle task ends it.
        runner.note("draining: no new requests; waiting for in-flight ones")
        self._set_state(runner, RunnerState.DRAINING)
        await self.wait_for(
            runner,
            lambda r: r.in_flight == 0 or r.state in GONE,
            float(self._tunable(runner, "request_timeout")),
        )
        if runner.state in GONE:
            return
        await self._terminate(runner)

    async def _terminate(self, runner: Runner, bound: float = TEARDOWN_BOUND) -> None:
        runner.note("TERMINATING: SIGTERM, teardown()")
        self._set_state(runner, RunnerState.TERMINATING)
        if runner.process:
            runner.process.terminate()
        if not await self.wait_for(runner, lambda r: r.state in GONE, bound):
            runner.note(f"teardown() took longer than {bound:g}s; killing")
            if runner.process:
                runner.process.kill()

    def kill(self, runner: Runner) -> None:
        """At once: in-flight requests are dropped (the gateway answers them 502)."""
        if runner.state in GONE:
            return
        runner.stopping = True
        runner.note("killed (SIGKILL)")
        runner.stop_requested.set()
        if runner.state in READY or runner.state == RunnerState.DRAINING:
            # Out of routing at once: a request sent in the moment before the lifecycle
            # task sees the process end would fail for nothing.
            self._set_state(runner, RunnerState.TERMINATING)
        if runner.process:
            runner.process.kill()

    async def shutdown(self, bound: float = 5.0) -> None:
        """Stop every runner: SIGTERM (teardown) within `bound` seconds, then SIGKILL."""
        for waiters in self.waiters.values():
            for waiter in waiters:
                if not waiter.future.done():
                    waiter.future.set_exception(StartFailed("the runtime is shutting down"))
        alive = self.alive()
        for runner in alive:
            runner.stopping = True
            runner.stop_requested.set()
        await asyncio.gather(
            *(self._terminate(r, bound) for r in alive if r.state not in GONE),
            return_exceptions=True,
        )
        tasks = list(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=bound)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    # -- slots ------------------------------------------------------------------------

    def _live_settings(self, runner: Runner) -> dict[str, Any]:
        """The settings a runner goes by now: a Current revision's are the alias's live
        ones (apps scale applies at once), any other revision's those it started with."""
        route = self.routes.get(runner.app)
        if route is not None and route.revision == runner.revision:
            return route.settings
        return runner.settings

    def _tunable(self, runner: Runner, name: str) -> Any:
        return self._live_settings(runner)[name]

    def _follow_settings(self, runner: Runner) -> None:
        """A backend that sizes a runner's slots from the settings (Ray: one runner takes
        every replica's requests) resizes them to the live settings."""
        slots = getattr(runner.process, "slots", None)
        if slots is None:
            return
        runner.slot_limit = slots(self._live_settings(runner))
        if runner.upstream is not None:
            runner.upstream.resize(runner.slot_limit)

    def try_acquire(self, revision: str) -> Runner | None:
        """Take a slot on the least-loaded ready runner of `revision` that has one free."""
        best: Runner | None = None
        for runner in self.runners.values():
            if (
                runner.revision == revision
                and runner.state in READY
                and runner.in_flight < runner.max_multiplexing
                and (best is None or runner.in_flight < best.in_flight)
            ):
                best = runner
        if best is not None:
            best.in_flight += 1
            if best.state == RunnerState.IDLE:
                best.state, best.idle_since, best.idle_shutdown_at = RunnerState.RUNNING, None, None
                self._notify(best)
        return best

    async def acquire(self, app: str, revision: str) -> Runner:
        """A slot for a request: at once if one is free, else wait in the app's queue."""
        runner = self.try_acquire(revision)
        if runner is not None:
            return runner
        waiter = Waiter(app, asyncio.get_running_loop().create_future())
        self.waiters[app].append(waiter)
        self.wake.set()
        try:
            return await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                self.release(waiter.future.result())  # Handed a slot just as it gave up.
            else:
                with contextlib.suppress(ValueError):
                    self.waiters[app].remove(waiter)
            raise

    def release(self, runner: Runner, *, served: bool = False) -> None:
        runner.in_flight -= 1
        if served:
            runner.crashes = 0  # A request served since the last crash resets the backoff.
        if runner.state == RunnerState.RUNNING and runner.in_flight == 0:
            runner.state, runner.idle_since = RunnerState.IDLE, utcnow()
        self._notify(runner)
        if self.waiters.get(runner.app):
            self.dispatch(runner.app)

    def dispatch(self, app: str) -> None:
        """Hand free slots to queued requests, oldest first."""
        queue = self.waiters.get(app)
        route = self.routes.get(app)
        while queue:
            waiter = queue[0]
            if waiter.future.done():
                queue.popleft()
                continue
            if route is None or route.revision is None:
                break
            runner = self.try_acquire(route.revision)
            if runner is None:
                break
            queue.popleft()
            waiter.future.set_result(runner)

    def queued(self, app: str) -> tuple[int, float]:
        """How many requests of `app` wait, and for how long the oldest has waited."""
        queue = [w for w in self.waiters.get(app, ()) if not w.future.done()]
        if not queue:
            return 0, 0.0
        return len(queue), time.monotonic() - queue[0].since

    # -- the routing table changed ----------------------------------------------------

    def route_changed(self, name: str, old: AppRoute | None, new: AppRoute | None) -> None:
        """Drain the runners of a revision that stopped being Current; resize the slots of
        the Current one's to its live settings; re-dispatch the queue."""
        if new is not None and new.revision:
            for runner in self.of_revision(new.revision):
                if runner.state not in GONE:
                    self._follow_settings(runner)
        if old is not None and old.revision and (new is None or new.revision != old.revision):
            for runner in self.of_revision(old.revision):
                if runner.state in ACTIVE:
                    runner.note("its revision is no longer Current: draining")
                    self.stop(runner)
        if new is None:
            for waiter in self.waiters.pop(name, deque()):
                if not waiter.future.done():
                    waiter.future.set_exception(StartFailed(f"app {name!r} was deleted"))
        else:
            self.dispatch(name)
        self.wake.set()

    def drain_not_current(self, name: str) -> None:
        route = self.routes.get(name)
        current = route.revision if route else None
        for runner in self.alive():
            if runner.app == name and runner.revision != current and runner.state in ACTIVE:
                runner.note("sync: not of the Current revision; draining")
                self.stop(runner)
