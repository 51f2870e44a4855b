"""The Ray backend: each revision a Ray Serve application on a Ray cluster.

Chosen with SWITCHBOARD_BACKEND=ray and RAY_ADDRESS (README, "Ray backend"). The
supervisor, the gateway and the routing stay Switchboard's; what changes is where a
revision's code runs and who scales it:

- a revision is the Serve application `sb--<app>--<revision id>` with the route prefix
  `/sb/<app>/<revision id>`; its bundle is the application's runtime_env working_dir, so
  Ray ships it to whichever node runs a replica; each replica is ray_replica.Replica,
  which starts the revision's runner (runner.py) in the runner sandbox on its node, with
  the sandbox's policy, the machine type's limits and the app's network sent from here,
  and forwards requests to it; its constructor returns once setup() finished there;
- Ray Serve's autoscaler, not Switchboard's, sets the replica count between
  min_concurrency and max_concurrency (the mapping is `deployment_options`);
- to the supervisor, a revision is one runner whose process is the application
  (`RayApplication`): ready when Serve says RUNNING, failed with Serve's message when it
  says DEPLOY_FAILED, ended when the application is gone; its gateway slots are
  max_concurrency × max_multiplexing of the live settings (`slots`: an `apps scale` moves
  them at once, as it moves Serve's bounds), and its upstream is Serve's HTTP proxy on
  127.0.0.1:SWITCHBOARD_RAY_SERVE_PORT under the revision's prefix;
- several runners of one revision (a rolling switch's target, a rollout's replacement)
  share its application, which is deleted when the last of them ends;
- the runtime keeps no cluster state Ray holds: on start it adopts a Current revision's
  application that already runs (no redeploy) and deletes those of other revisions.

Ray's calls block, so they run in threads. The replica's own code is ray_replica.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings as conf

from dashboard.runner_states import ACTIVE, GONE, READY, RunnerState
from dashboard.runtime import sandbox
from dashboard.runtime.autoscaler import Autoscaler
from dashboard.runtime.backend import RunnerSpec, machine_limits
from dashboard.runtime.ray_replica import Replica
from dashboard.runtime.routing import RevisionInfo
from dashboard.runtime.upstream import UpstreamPool

log = logging.getLogger("switchboard.runtime")
PREFIX = "sb"
POLL = 0.5
WATCH = 1.0  # How often replicas are read from Serve while an application runs.
KEEP_GONE_FOR = 120.0  # A replica that ended stays listed (TERMINATED) this long.
# Serve's replica states → the seed's runner states.
REPLICA_STATES = {
    "STARTING": RunnerState.SETUP,
    "UPDATING": RunnerState.SETUP,
    "RECOVERING": RunnerState.SETUP,
    "PENDING_MIGRATION": RunnerState.DRAINING,
    "RUNNING": RunnerState.RUNNING,
    "STOPPING": RunnerState.TERMINATING,
    "STOPPED": RunnerState.TERMINATED,
}


def app_name(app: str, revision: str) -> str:
    return f"{PREFIX}--{app}--{revision}"


def route_prefix(app: str, revision: str) -> str:
    return f"/{PREFIX}/{app}/{revision}"


def revision_of(name: str) -> str | None:
    """The revision id in an application name of ours; None for anyone else's."""
    parts = name.split("--")
    return parts[2] if len(parts) == 3 and parts[0] == PREFIX else None


# -- in the runtime --------------------------------------------------------------------


def _upload(bundle_dir: Path) -> str:
    """The bundle packed into the cluster's object store: the gcs:// URI a node fetches.

    Serve takes only such URIs for a deployment's working_dir (a local path would exist
    on this machine only). Ray packs a job's own working_dir the same way at ray.init;
    for one per application its packaging function is called directly.
    """
    from ray._private.runtime_env.working_dir import upload_working_dir_if_needed

    env = upload_working_dir_if_needed(
        {"working_dir": str(bundle_dir)}, include_gitignore=False, logger=log
    )
    return env["working_dir"]


def deployment_options(settings: dict[str, Any], working_dir: Path | str) -> dict[str, Any]:
    """The revision's settings as Serve deployment options (README: "Ray backend")."""
    lowest = int(settings["min_concurrency"])
    highest = max(int(settings["max_concurrency"]), 1)
    mux = max(int(settings["max_multiplexing"]), 1)
    # Switchboard keeps max(min_concurrency, concurrency_buffer) runners warm when idle;
    # Ray has no spare count on top of the load, so the buffer only raises the floor.
    floor = min(max(lowest, int(settings["concurrency_buffer"])), highest)
    # concurrency_buffer_perc keeps that share of busy runners spare: the same as aiming
    # each replica at mux / (1 + perc/100) ongoing requests.
    target = mux / (1 + int(settings["concurrency_buffer_perc"]) / 100)
    machine = conf.RAY_MACHINE_TYPES.get(settings["machine_type"]) or conf.RAY_MACHINE_TYPES["XS"]
    actor: dict[str, Any] = {
        "num_cpus": machine.get("num_cpus", 0),
        "num_gpus": machine.get("num_gpus", 0),
        "runtime_env": {"working_dir": str(working_dir)},
    }
    if machine.get("memory_mb"):
        actor["memory"] = int(machine["memory_mb"]) * 1024 * 1024
    return {
        "name": "runner",
        # A graceful rollout (a new version of the same code) starts the replacements
        # before it stops old replicas; setup() that raised is not retried, as locally.
        "max_surge_percent": 100,
        "max_constructor_retry_count": 1,
        "max_ongoing_requests": mux,
        "autoscaling_config": {
            "min_replicas": floor,
            # A deploy runs setup() at least once, as with the local backend.
            "initial_replicas": max(floor, 1),
            "max_replicas": highest,
            "target_ongoing_requests": target,
            "upscale_delay_s": float(settings["scaling_delay"]),
            "downscale_delay_s": float(settings["keep_alive"]),
        },
        "graceful_shutdown_timeout_s": float(settings["request_timeout"]),
        # A replica that died (a node lost, a kill) is noticed and replaced within this.
        "health_check_period_s": 2.0,
        "ray_actor_options": actor,
    }


class RayApplication:
    """One supervisor runner's view of its revision's Serve application.

    The supervisor keeps it (the gateway's slots and upstream, the deploy's outcome); the
    runner rows a user sees are the application's replicas (RayBackend.runner_rows).
    """

    pid = None

    def __init__(
        self,
        backend: RayBackend,
        name: str,
        shared: _Shared,
        ready: asyncio.Future[str],
    ) -> None:
        self._backend = backend
        self._name = name
        self._shared = shared
        self._ready = ready  # The deploy's, or the rolling restart's this runner asked for.
        self._ended = asyncio.get_running_loop().create_future()
        shared.holders.add(self)

    @staticmethod
    def slots(settings: dict[str, Any]) -> int:
        """The gateway's limit on the revision's requests at once, given its settings: every
        replica's ongoing requests (Serve's max_replicas × max_ongoing_requests)."""
        return max(int(settings["max_concurrency"]), 1) * max(int(settings["max_multiplexing"]), 1)

    def upstream(self, limit: int) -> UpstreamPool:
        return UpstreamPool(
            ("127.0.0.1", self._backend.serve_port),
            limit,
            prefix=route_prefix(self._shared.app, self._shared.revision),
        )

    async def ready_message(self) -> str:
        message = await asyncio.shield(self._ready)
        if message == "ready":
            await self._backend.watch(self._name)
        return message

    async def wait(self) -> int:
        return await asyncio.shield(self._ended)

    def end(self, code: int) -> None:
        if not self._ended.done():
            self._ended.set_result(code)

    def terminate(self) -> None:
        self._backend.release(self, force=False)

    def kill(self) -> None:
        self._backend.release(self, force=True)


class _Shared:
    def __init__(self, spec: RunnerSpec, ready: asyncio.Future[str]) -> None:
        self.app = spec.app
        self.revision = spec.revision
        self.spec = spec
        self.settings = dict(spec.settings or {})
        self.network = str(spec.network)  # The app's outbound network for its replicas.
        self.ready = ready
        self.holders: set[RayApplication] = set()
        self.working_dir = ""  # The bundle's URI in the cluster, once uploaded.
        self.generation = 0  # Bumped by each rolling restart: Serve's version of the code.
        self.restart: asyncio.Future[str] | None = None

    @property
    def version(self) -> str:
        return f"{self.revision}.{self.generation}"


class RayBackend:
    """Runs revisions as Ray Serve applications on the cluster at RAY_ADDRESS."""

    def __init__(self) -> None:
        self._apps: dict[str, _Shared] = {}
        self._watched: set[str] = set()
        self._watcher: asyncio.Task | None = None
        self._connected = False
        self.serve_port = conf.RAY_SERVE_PORT  # Where Serve's proxy listens, once connected.
        self._logs_dir: Path | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="ray")
        # Replica rows by runner id, refreshed from Serve every WATCH seconds.
        self._replicas: dict[str, dict[str, Any]] = {}
        self._replicas_changed = asyncio.Event()
        # Why each application whose deploy failed failed: its replicas end FAILED with it.
        self._failed: dict[str, str] = {}

    # Ray's client calls block, and are not safe to make at once from several threads
    # (serializing a deployment swaps cloudpickle's registrations; two serve.start calls
    # race for the controller): they run one at a time in one thread of their own. None
    # of them waits long: deletes and deploys are asked without blocking, then polled.
    async def _call(self, func, *args, **kwargs):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, functools.partial(func, *args, **kwargs))

    def _connect(self) -> None:
        if self._connected:
            return
        import ray
        from ray import serve

        ray.init(
            address=conf.RAY_ADDRESS or "auto",
            namespace="switchboard",
            log_to_driver=False,
            ignore_reinit_error=True,
            configure_logging=False,
        )
        # One proxy, on the head node, on loopback: the gateway is the public door.
        serve.start(
            proxy_location="HeadOnly",
            http_options={"host": "127.0.0.1", "port": conf.RAY_SERVE_PORT},
        )
        # Serve keeps the proxy it started first on a cluster (an earlier runtime's, with
        # another port) and ignores new options: the gateway goes where it listens.
        from ray.serve.context import _get_global_client

        port = _get_global_client().http_config.port
        if port != conf.RAY_SERVE_PORT:
            log.warning(
                "ray: Serve's proxy on this cluster listens on port %s, not "
                "SWITCHBOARD_RAY_SERVE_PORT=%s (it keeps the port it first started with); "
                "the gateway forwards there",
                port,
                conf.RAY_SERVE_PORT,
            )
        self.serve_port = port
        with contextlib.suppress(Exception):  # Where this machine's node keeps its logs.
            self._logs_dir = Path(ray._private.worker._global_node.get_logs_dir_path())
        self._connected = True

    async def connect(self) -> None:
        await self._call(self._connect)

    def _statuses(self) -> dict[str, Any]:
        from ray import serve

        return dict(serve.status().applications)

    async def reconcile(self, current: set[str]) -> None:
        """After a restart: keep the applications of Current revisions, delete the rest."""
        await self.connect()
        from ray import serve

        for name in await self._call(self._statuses):
            revision = revision_of(name)
            if revision is not None and revision not in current and name not in self._apps:
                log.info("ray: deleting application %s (its revision is not Current)", name)
                await self._call(serve.delete, name, _blocking=False)

    async def start(self, spec: RunnerSpec) -> RayApplication:
        await self.connect()
        name = app_name(spec.app, spec.revision)
        shared = self._apps.get(name)
        loop = asyncio.get_running_loop()
        if shared is None:
            shared = _Shared(spec, loop.create_future())
            self._apps[name] = shared
            _background(self._deploy(name, shared))
            ready = shared.ready
        elif shared.ready.done() and shared.ready.result() == "ready":
            # Another runner of a revision whose application runs: a rollout's replacement.
            # Serve replaces every replica, the new ones before the old stop (surge); they
            # start with the app's network now, as a local replacement does.
            shared.network = spec.network
            ready = self._restart(name, shared)
        else:
            ready = shared.ready
        return RayApplication(self, name, shared, ready)

    def _restart(self, name: str, shared: _Shared) -> asyncio.Future[str]:
        """A rolling restart of the application's replicas (one for runners asked at once)."""
        if shared.restart is None or shared.restart.done():
            shared.restart = asyncio.get_running_loop().create_future()
            shared.generation += 1
            _note(shared.spec.log_path, f"rolling restart of {name}'s replicas (new first)")
            _background(self._redeploy(name, shared, shared.restart))
        return shared.restart

    def reconfigure(self, name: str, settings: dict[str, Any]) -> None:
        """Apply changed settings (apps scale) to a running application: Serve updates
        its autoscaling bounds and per-replica limit in place, without restarting them."""
        shared = self._apps.get(name)
        if shared is None or not (shared.ready.done() and shared.ready.result() == "ready"):
            return
        if settings == shared.settings:
            return
        shared.settings = dict(settings)
        _note(shared.spec.log_path, f"settings changed: updating {name}'s deployment")
        _background(self._redeploy(name, shared, asyncio.get_running_loop().create_future()))

    async def _deploy(self, name: str, shared: _Shared) -> None:
        spec, ready = shared.spec, shared.ready
        prefix = route_prefix(spec.app, spec.revision)
        try:
            status = await self._until_gone_or_running(name)
            if status is not None:
                _note(spec.log_path, f"adopted Serve application {name}, already running")
            else:
                _note(spec.log_path, f"deploying Serve application {name} at {prefix}")
                self._failed.pop(name, None)
                shared.working_dir = await self._call(_run, name, shared)
            await self._until_running(name, spec.log_path, ready)
        except Exception as exc:
            _note(spec.log_path, "".join(traceback.format_exception(exc)))
            if not ready.done():
                ready.set_result(f"setup failed: Ray refused the deploy: {exc}")

    async def _until_gone_or_running(self, name: str) -> Any:
        """Serve's status of `name` when it runs (to adopt), else None once no application
        of that name is left (one being deleted, by a kill a moment ago, is waited out)."""
        while True:
            status = (await self._call(self._statuses)).get(name)
            if status is None or status.status in ("DEPLOY_FAILED", "UNHEALTHY"):
                return None
            if status.status == "RUNNING":
                return status
            await asyncio.sleep(POLL)

    async def _redeploy(self, name: str, shared: _Shared, ready: asyncio.Future[str]) -> None:
        """Deploy the application again: a new version (a rolling restart), or the same
        with new settings. `ready` says when a restart's replicas have all been replaced."""
        restart = ready is shared.restart
        try:
            old = {r["id"] for r in (await self._call(_replica_details)).get(name, [])}
            shared.working_dir = await self._call(_run, name, shared)
            await self._until_running(
                name, shared.spec.log_path, ready, replacing=old if restart else None
            )
        except Exception as exc:
            _note(shared.spec.log_path, "".join(traceback.format_exception(exc)))
            if not ready.done():
                ready.set_result(f"setup failed: Ray refused the deploy: {exc}")

    async def _until_running(
        self,
        name: str,
        log_path: Path,
        ready: asyncio.Future[str],
        replacing: set[str] | None = None,
    ) -> None:
        """Resolve `ready` with what Serve says of the deploy of `name`: ready, or why it
        failed. For a rolling restart, ready once none of the `replacing` replicas is left
        (Serve's status says RUNNING throughout: its old replicas serve meanwhile)."""
        while not ready.done():
            status = (await self._call(self._statuses)).get(name)
            state = status.status if status else "NOT_STARTED"
            if state == "RUNNING" and replacing:
                left = {r["id"] for r in (await self._call(_replica_details)).get(name, [])}
                if left & replacing:
                    state = "DEPLOYING"
            if state == "RUNNING":
                ready.set_result("ready")
            elif state == "DEPLOY_FAILED":
                # The application says which deployment failed; the deployment says why,
                # ending with the replica constructor's traceback.
                message = "\n".join(
                    [status.message] + [d.message for d in status.deployments.values()]
                )
                _note(log_path, f"Serve says DEPLOY_FAILED:\n{message}")
                self._failed[name] = _reason(message)
                await self._refresh()  # Its replicas that are gone end FAILED, saying why.
                ready.set_result("setup failed: " + self._failed[name])
            else:
                await asyncio.sleep(POLL)

    def release(self, holder: RayApplication, *, force: bool) -> None:
        """A runner ends: when it was the application's last, the application goes."""
        shared = self._apps.get(holder._name)
        if shared is None or holder not in shared.holders:
            holder.end(-9 if force else 0)
            return
        shared.holders.discard(holder)
        if shared.holders:
            holder.end(-9 if force else 0)
            return
        del self._apps[holder._name]
        self._watched.discard(holder._name)
        _background(self._delete(holder, force))

    async def _delete(self, holder: RayApplication, force: bool) -> None:
        from ray import serve

        try:
            # Serve drains each replica (graceful_shutdown_timeout_s) and calls __del__,
            # the app's teardown(); a kill does not wait for it.
            await self._call(serve.delete, holder._name, _blocking=False)
            while not force and holder._name in await self._call(self._statuses):
                await asyncio.sleep(POLL)
        except Exception:
            log.exception("ray: deleting %s failed", holder._name)
        holder.end(-9 if force else 0)

    async def watch(self, name: str) -> None:
        """Follow an application's replicas, and notice it disappearing from Ray (deleted
        by hand, cluster lost). Its replicas are read once before this returns, so a runner
        ready to the supervisor is listed as its replicas, never as the application."""
        self._watched.add(name)
        await self._refresh()
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.ensure_future(self._watch())

    async def _refresh(self) -> dict[str, Any] | None:
        """Read every replica of ours from Serve into the runner rows; Serve's statuses."""
        try:
            statuses = await self._call(self._statuses)
            details = await self._call(_replica_details)
            ongoing = await self._call(
                _ongoing, [r["actor_name"] for rs in details.values() for r in rs]
            )
        except Exception:
            log.exception("ray: reading Serve's status failed")
            return None
        self._update_replicas(details, ongoing)
        return statuses

    async def _watch(self) -> None:
        while self._watched or self._live_replicas():
            await asyncio.sleep(WATCH)
            statuses = await self._refresh()
            if statuses is None:
                continue
            for name in list(self._watched):
                shared = self._apps.get(name)
                if shared is None:
                    self._watched.discard(name)
                    continue
                status = statuses.get(name)
                if status is None or status.status in ("DELETING", "DEPLOY_FAILED"):
                    self._watched.discard(name)
                    del self._apps[name]
                    for holder in list(shared.holders):
                        holder.end(1)

    # -- replicas as runners -------------------------------------------------------------

    def _live_replicas(self) -> list[dict[str, Any]]:
        return [r for r in self._replicas.values() if r["state"] not in GONE]

    def _update_replicas(
        self, details: dict[str, list[dict[str, Any]]], ongoing: dict[str, int]
    ) -> None:
        now = time.monotonic()
        seen = set()
        for name, replicas in details.items():
            shared = self._apps.get(name)
            _, app, revision = name.split("--")
            for replica in replicas:
                runner_id = replica_runner_id(replica["id"])
                seen.add(runner_id)
                row = self._replicas.get(runner_id)
                if row is None:
                    row = self._replicas[runner_id] = {
                        "id": runner_id,
                        "app": app,
                        "revision": revision,
                        "in_flight": 0,
                        "ready_at": None,
                        "idle_since": None,
                        "idle_shutdown_at": None,
                        "ended_at": None,
                        "restarts": 0,
                        "crash_looping": False,
                        "error": "",
                        "machine_type": (shared.settings if shared else {}).get("machine_type"),
                        "replica": replica["id"],
                        "_application": name,
                        "_stopping": False,
                        "_gone_at": None,
                    }
                state = replica["state"]
                in_flight = ongoing.get(replica["actor_name"], row["in_flight"])
                if state == RunnerState.RUNNING and not in_flight:
                    state = RunnerState.IDLE  # Ready and serving nothing, as the seed says.
                if row["_stopping"] and (state in READY or state == RunnerState.SETUP):
                    state = row["state"]  # Ours to stop: DRAINING or TERMINATING until gone.
                started = replica.get("started_at")
                row.update(
                    state=state,
                    ray_state=replica["ray_state"],
                    pid=replica["pid"],
                    node=replica["node_ip"],
                    node_id=replica["node_id"],
                    started_at=_iso(started) if started else None,
                    log_file=replica["log_file_path"],
                    in_flight=in_flight,
                    _actor=replica["actor_name"],
                    _worker=replica.get("worker_id"),
                )
                if state in READY and row["ready_at"] is None:
                    row["ready_at"] = _iso(time.time())
        for runner_id, row in list(self._replicas.items()):
            if runner_id in seen:
                continue
            # A replica that never got ready in a deploy that failed: its setup() did (the
            # failure may be known only after the replica was seen gone).
            failed = None if row["ready_at"] else self._failed.get(row["_application"])
            if row["state"] not in GONE or (failed and row["state"] != RunnerState.FAILED):
                row.update(
                    state=RunnerState.FAILED if failed else RunnerState.TERMINATED,
                    error=failed or row["error"],
                    in_flight=0,
                    ended_at=row["ended_at"] or _iso(time.time()),
                )
                row["_gone_at"] = row["_gone_at"] or now
            elif row["_gone_at"] is not None and now - row["_gone_at"] > KEEP_GONE_FOR:
                del self._replicas[runner_id]
        event, self._replicas_changed = self._replicas_changed, asyncio.Event()
        event.set()

    def runner_rows(self, runners: list[Any]) -> list[dict[str, Any]]:
        """The runner rows of these supervisor runners: each application's replicas (those
        that ended within KEEP_GONE_FOR too); an application with no replica yet (deploying,
        or failed) is listed as its runner, with the deploy's state and error."""
        rows: list[dict[str, Any]] = []
        done: set[str] = set()
        for runner in runners:
            process = runner.process
            name = getattr(process, "_name", None) or app_name(runner.app, runner.revision)
            replicas = [r for r in self._replicas.values() if r["_application"] == name]
            if not replicas:
                rows.append(runner.as_dict())
            elif name not in done:
                rows += [_public(r) for r in replicas]
            done.add(name)
        return rows

    def replica(self, runner_id: str) -> dict[str, Any] | None:
        row = self._replicas.get(runner_id)
        return _public(row) if row else None

    async def wait_replica(self, runner_id: str, predicate, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate(self._replicas[runner_id]):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._replicas_changed.wait(), remaining)
        return True

    def stop_replica(self, runner_id: str, *, force: bool) -> None:
        """End one replica; Serve starts another in its place while its application still
        wants that many. Graceful: the replica drains its requests and runs teardown()
        (Serve's own shutdown path for a replica), then ends; force: it ends at once."""
        row = self._replicas.get(runner_id)
        if row is None or row["state"] in GONE or (row["_stopping"] and not force):
            return
        row["_stopping"] = True
        row["state"] = RunnerState.TERMINATING if force else RunnerState.DRAINING
        _background(self._end_replica(row, force))

    async def _end_replica(self, row: dict[str, Any], force: bool) -> None:
        try:
            if not force:
                shared = self._apps.get(row["_application"])
                grace = float((shared.settings if shared else {}).get("request_timeout", 30))
                drained = await self._call(_graceful_shutdown, row["_actor"])
                if drained is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(asyncio.wrap_future(drained.future()), grace + 5)
                row["state"] = RunnerState.TERMINATING
            await self._call(_kill_actor, row["_actor"])
        except Exception:
            log.exception("ray: ending replica %s failed", row["replica"])

    def replica_log(self, runner_id: str, tail: int, app: str | None) -> list[str] | None:
        """The replica's log lines: Serve's log of the replica and its worker's output (the
        app's prints and tracebacks), read from this machine's node; None when there is no
        such replica (of `app`, when given)."""
        row = self._replicas.get(runner_id)
        if row is None or (app and row["app"] != app):
            return None
        root = self._logs_dir
        files: list[Path] = []
        if root is not None:
            if row.get("log_file"):
                files.append(root / str(row["log_file"]).lstrip("/"))
            if row.get("_worker"):
                files += sorted(root.glob(f"worker-{row['_worker']}-*.out"))
                files += sorted(root.glob(f"worker-{row['_worker']}-*.err"))
        lines: list[str] = []
        for path in files:
            with contextlib.suppress(OSError):
                text = path.read_bytes()[-2 * 1024 * 1024 :].decode(errors="replace")
                lines += [f"[{path.name}] {line}" for line in text.splitlines()]
        if not lines:
            where = f"node {row.get('node')}, {row.get('log_file')}"
            return [f"replica {row['replica']}'s log is not on this machine ({where})"]
        return lines[-tail:]


def replica_runner_id(replica_id: str) -> str:
    """A Serve replica's runner id: the same form as the local backend's, and the same
    after a runtime restart."""
    return "r-" + hashlib.sha256(replica_id.encode()).hexdigest()[:8]


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not k.startswith("_")}


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def _background(coro) -> asyncio.Task:
    task = asyncio.ensure_future(coro)
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    return task


def _run(name: str, shared: _Shared) -> str:
    """Deploy (or redeploy) the revision's application without waiting for it (in the Ray
    thread: even building the options pickles Serve's policy modules, which is not
    thread-safe). Returns the bundle's URI in the cluster."""
    from ray import serve

    spec = shared.spec
    prefix = route_prefix(spec.app, spec.revision)
    working_dir = shared.working_dir or _upload(spec.bundle_dir)
    options = deployment_options(shared.settings, working_dir)
    # Serve's version of the code: the same for a change of settings, which Serve applies
    # to running replicas; a new one for a rolling restart. (Public options no longer take
    # it; Serve otherwise picks a random one at each deploy, restarting every replica.)
    app = (
        serve.deployment(Replica)
        .options(**options, version=shared.version, _internal=True)
        .bind(
            spec.entrypoint,
            prefix,
            spec.max_multiplexing,
            sandbox.policy(),
            machine_limits(spec.machine_type),
            shared.network,
        )
    )
    serve._run(app, name=name, route_prefix=prefix, _blocking=False)
    return working_dir


_actors: dict[str, Any] = {}


def _actor(name: str) -> Any:
    import ray
    from ray.serve._private.constants import SERVE_NAMESPACE

    if name not in _actors:
        _actors[name] = ray.get_actor(name, namespace=SERVE_NAMESPACE)
    return _actors[name]


def _ongoing(names: list[str]) -> dict[str, int]:
    """Each replica's ongoing requests, as Serve's own router asks them of the replica."""
    import ray

    refs = {}
    for name in names:
        with contextlib.suppress(ValueError):
            refs[name] = _actor(name).get_num_ongoing_requests.remote()
    for name in [n for n in _actors if n not in refs]:
        del _actors[name]
    if not refs:
        return {}
    done, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=1.0)
    found = {}
    for name, ref in refs.items():
        if ref in done:
            with contextlib.suppress(Exception):
                found[name] = int(ray.get(ref))
    return found


def _graceful_shutdown(name: str) -> Any:
    """Ask a replica to drain and run its app's teardown(): the call Serve's controller
    makes of a replica it stops. Returns the call's reference, None if it is gone."""
    try:
        return _actor(name).perform_graceful_shutdown.remote()
    except ValueError:
        return None


def _kill_actor(name: str) -> None:
    import ray

    with contextlib.suppress(ValueError):
        ray.kill(_actor(name), no_restart=True)


def _replica_details() -> dict[str, list[dict[str, Any]]]:
    """Each of our applications' replicas: id, node, state (the seed's), pid, start, log."""
    from ray.serve.context import _get_global_client

    details = _get_global_client().get_serve_details()
    found: dict[str, list[dict[str, Any]]] = {}
    for name, app in (details.get("applications") or {}).items():
        if revision_of(name) is None:
            continue
        replicas = []
        for deployment in (app.get("deployments") or {}).values():
            for replica in deployment.get("replicas") or []:
                replicas.append(
                    {
                        "id": replica.get("replica_id"),
                        "state": REPLICA_STATES.get(replica.get("state"), replica.get("state")),
                        "ray_state": replica.get("state"),
                        "node_id": replica.get("node_id"),
                        "node_ip": replica.get("node_ip"),
                        "pid": replica.get("pid"),
                        "actor_name": replica.get("actor_name"),
                        "worker_id": replica.get("worker_id"),
                        "started_at": replica.get("start_time_s"),
                        "log_file_path": replica.get("log_file_path"),
                    }
                )
        found[name] = replicas
    return found


def _reason(message: str) -> str:
    """One line for the revision's error out of Serve's message (a traceback at its end)."""
    lines = [line.strip() for line in (message or "").splitlines() if line.strip()]
    return lines[-1] if lines else "Serve could not deploy the application"


def _note(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(f"[runtime {time.strftime('%Y-%m-%d %H:%M:%S')}] {text}\n")


class RayAutoscaler(Autoscaler):
    """Keeps one runner (its Serve application) per Current revision; Serve scales replicas.

    Runners of revisions that are not Current are retired as with the local backend. On
    its first tick it reconciles Ray with the routing table: applications of revisions
    that are not Current are deleted, a Current one that runs is adopted by its runner.
    """

    reconciled = False

    async def run(self) -> None:
        backend = self.supervisor.backend
        current = {r.revision for r in self.routes.values() if r.revision}
        try:
            await backend.reconcile(current)
        except Exception:
            log.exception("ray: reconciling with the cluster failed")
        await super().run()

    def scale(self, name: str) -> None:
        sup = self.supervisor
        route = self.routes.get(name)
        current = route.revision if route else None
        runners = [r for r in sup.alive() if r.app == name and not r.stopping]
        self._retire_not_current([r for r in runners if r.revision != current])
        if route is None or current is None:
            return
        mine = [r for r in runners if r.revision == current and r.state in ACTIVE]
        if route.revision_status == "suspended":
            for runner in mine:
                runner.note("suspended: deleting its Serve application")
                sup.stop(runner)
            return
        if mine:
            # apps scale: Serve applies the new bounds to the running replicas.
            self.supervisor.backend.reconfigure(app_name(name, current), route.settings)
        elif self._may_start(route):
            rev = RevisionInfo(
                id=current,
                app=name,
                status=route.revision_status or "",
                entrypoint=route.entrypoint,
                bundle_dir=route.bundle_dir,
            )
            sup.start(rev, route.settings)
