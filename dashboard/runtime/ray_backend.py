"""The Ray backend: each revision a Ray Serve application on a Ray cluster.

Chosen with SWITCHBOARD_BACKEND=ray and RAY_ADDRESS (README, "Ray backend"). The
supervisor, the gateway and the routing stay Switchboard's; what changes is where a
revision's code runs and who scales it:

- a revision is the Serve application `sb--<app>--<revision id>` with the route prefix
  `/sb/<app>/<revision id>`; its bundle is the application's runtime_env working_dir, so
  Ray ships it to whichever node runs a replica; each replica is `Replica` below, which
  loads the App class with the SDK's loader and runs setup() in its constructor;
- Ray Serve's autoscaler, not Switchboard's, sets the replica count between
  min_concurrency and max_concurrency (the mapping is `deployment_options`);
- to the supervisor, a revision is one runner whose process is the application
  (`RayApplication`): ready when Serve says RUNNING, failed with Serve's message when it
  says DEPLOY_FAILED, ended when the application is gone; its gateway slots are
  max_concurrency × max_multiplexing, and its upstream is Serve's HTTP proxy on
  127.0.0.1:SWITCHBOARD_RAY_SERVE_PORT under the revision's prefix;
- several runners of one revision (a rolling switch's target, a rollout's replacement)
  share its application, which is deleted when the last of them ends;
- the runtime keeps no cluster state Ray holds: on start it adopts a Current revision's
  application that already runs (no redeploy) and deletes those of other revisions.

Ray's calls block, so they run in threads. The replica's own code is ray_replica.py.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from django.conf import settings as conf

from dashboard.runner_states import ACTIVE, RunnerState
from dashboard.runtime.autoscaler import Autoscaler
from dashboard.runtime.backend import RunnerSpec
from dashboard.runtime.ray_replica import Replica
from dashboard.runtime.routing import RevisionInfo
from dashboard.runtime.upstream import UpstreamPool

log = logging.getLogger("switchboard.runtime")
PREFIX = "sb"
POLL = 0.5
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
        "health_check_period_s": 10.0,
        "ray_actor_options": actor,
    }


class RayApplication:
    """One supervisor runner's view of its revision's Serve application."""

    pid = None

    def __init__(self, backend: RayBackend, name: str, shared: _Shared, slots: int) -> None:
        self._backend = backend
        self._name = name
        self._shared = shared
        self._ended = asyncio.get_running_loop().create_future()
        self.slots = slots  # The gateway's limit: every replica's ongoing requests.
        self.replicas: list[dict[str, Any]] = []
        shared.holders.add(self)

    def upstream(self) -> UpstreamPool:
        return UpstreamPool(
            ("127.0.0.1", conf.RAY_SERVE_PORT),
            self.slots,
            prefix=route_prefix(self._shared.app, self._shared.revision),
        )

    async def ready_message(self) -> str:
        message = await asyncio.shield(self._shared.ready)
        if message == "ready":
            self._backend.watch(self._name)
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
    def __init__(self, app: str, revision: str, ready: asyncio.Future[str]) -> None:
        self.app = app
        self.revision = revision
        self.ready = ready
        self.holders: set[RayApplication] = set()


class RayBackend:
    """Runs revisions as Ray Serve applications on the cluster at RAY_ADDRESS."""

    def __init__(self) -> None:
        self._apps: dict[str, _Shared] = {}
        self._watched: set[str] = set()
        self._watcher: asyncio.Task | None = None
        self._connected = False
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="ray")

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
        settings = spec.settings or {}
        slots = max(int(settings.get("max_concurrency", 1)), 1) * max(spec.max_multiplexing, 1)
        shared = self._apps.get(name)
        if shared is None:
            loop = asyncio.get_running_loop()
            shared = _Shared(spec.app, spec.revision, loop.create_future())
            self._apps[name] = shared
            task = asyncio.ensure_future(self._deploy(name, spec, settings, shared.ready))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return RayApplication(self, name, shared, slots)

    async def _deploy(
        self, name: str, spec: RunnerSpec, settings: dict, ready: asyncio.Future[str]
    ) -> None:

        prefix = route_prefix(spec.app, spec.revision)
        try:
            statuses = await self._call(self._statuses)
            if name in statuses and statuses[name].status == "RUNNING":
                _note(spec.log_path, f"adopted Serve application {name}, already running")
            else:
                _note(spec.log_path, f"deploying Serve application {name} at {prefix}")
                await self._call(_run, name, prefix, spec, settings)
            while not ready.done():
                status = (await self._call(self._statuses)).get(name)
                state = status.status if status else "NOT_STARTED"
                if state == "RUNNING":
                    ready.set_result("ready")
                elif state == "DEPLOY_FAILED":
                    # The application says which deployment failed; the deployment says
                    # why, ending with the replica constructor's traceback.
                    message = "\n".join(
                        [status.message] + [d.message for d in status.deployments.values()]
                    )
                    _note(spec.log_path, f"Serve says DEPLOY_FAILED:\n{message}")
                    ready.set_result("setup failed: " + _reason(message))
                else:
                    await asyncio.sleep(POLL)
        except Exception as exc:
            _note(spec.log_path, "".join(traceback.format_exception(exc)))
            if not ready.done():
                ready.set_result(f"setup failed: Ray refused the deploy: {exc}")

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
        asyncio.ensure_future(self._delete(holder, force))

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

    def watch(self, name: str) -> None:
        """Notice an application that disappears from Ray (deleted by hand, cluster lost)."""
        self._watched.add(name)
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while self._watched:
            await asyncio.sleep(2)
            try:
                statuses = await self._call(self._statuses)
                details = await self._call(_replica_details)
            except Exception:
                log.exception("ray: reading Serve's status failed")
                continue
            for name in list(self._watched):
                shared = self._apps.get(name)
                if shared is None:
                    self._watched.discard(name)
                    continue
                for holder in shared.holders:
                    holder.replicas = details.get(name, [])
                status = statuses.get(name)
                if status is None or status.status in ("DELETING", "DEPLOY_FAILED"):
                    self._watched.discard(name)
                    del self._apps[name]
                    for holder in list(shared.holders):
                        holder.end(1)


def _run(name: str, prefix: str, spec: RunnerSpec, settings: dict[str, Any]) -> None:
    """Deploy the revision's application without waiting for it (in the Ray thread: even
    building the options pickles Serve's policy modules, which is not thread-safe)."""
    from ray import serve

    options = deployment_options(settings, _upload(spec.bundle_dir))
    app = (
        serve.deployment(Replica)
        .options(**options)
        .bind(spec.entrypoint, prefix, spec.max_multiplexing)
    )
    serve._run(app, name=name, route_prefix=prefix, _blocking=False)


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
        if not mine and self._may_start(route):
            rev = RevisionInfo(
                id=current,
                app=name,
                status=route.revision_status or "",
                entrypoint=route.entrypoint,
                bundle_dir=route.bundle_dir,
            )
            sup.start(rev, route.settings)
