"""Where runner processes come from: a small interface and its local implementation.

The supervisor only needs to start a runner, learn whether its setup() finished, stop it
gently or at once, and wait for it to end. LocalProcessBackend does that with child
processes of the runtime on this machine. A Kubernetes backend (one pod per runner, the
ready message read from the pod's log or a readiness probe) is the planned path beyond
one machine; it would implement the same RunnerBackend protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from django.conf import settings
from django.core.management.base import CommandError

from dashboard.controlplane.models import Network
from dashboard.runtime import sandbox, sandboxed
from dashboard.runtime.sandboxed import SandboxedRunner


@dataclass(frozen=True)
class RunnerSpec:
    runner_id: str
    app: str
    revision: str
    bundle_dir: Path
    entrypoint: str
    socket_path: Path
    log_path: Path
    max_multiplexing: int
    machine_type: str
    network: str = Network.OFF
    settings: dict | None = None  # The revision's settings (the Ray backend maps them).


class RunnerProcess(Protocol):
    pid: int | None

    async def ready_message(self) -> str:
        """The runner's one message ("ready" or "setup failed: ..."), or "" if it died first."""

    async def wait(self) -> int:
        """Wait for the runner to end; return its exit code (negative: killed by that signal)."""

    def terminate(self) -> None:
        """Ask the runner to stop: it stops accepting, runs teardown() and exits."""

    def kill(self) -> None:
        """End the runner at once."""


class RunnerBackend(Protocol):
    async def start(self, spec: RunnerSpec) -> RunnerProcess: ...


def make_backend() -> RunnerBackend:
    """The backend SWITCHBOARD_BACKEND names: "local" (the default) or "ray"."""
    if settings.BACKEND == "ray":
        from dashboard.runtime.ray_backend import RayBackend

        return RayBackend()
    if settings.BACKEND != "local":
        raise ValueError(f"SWITCHBOARD_BACKEND must be local or ray, not {settings.BACKEND!r}")
    return LocalProcessBackend()


class ClusterUnavailable(CommandError):
    """SWITCHBOARD_BACKEND=ray cannot reach its cluster; the message says what to do.

    A CommandError, so `manage.py up` and `manage.py runtime` end on that one line.
    """


def ensure_cluster() -> None:
    """With SWITCHBOARD_BACKEND=ray, refuse to start unless the ray extra is installed and
    the head node at RAY_ADDRESS accepts a connection (a deploy would otherwise wait on
    Ray's connection retries for ever). Nothing to check for the local backend.

    Called by the runtime at start and by `manage.py up`.
    """
    if settings.BACKEND != "ray":
        return
    see = "see README, Ray backend"
    if importlib.util.find_spec("ray") is None:
        raise ClusterUnavailable(
            f"SWITCHBOARD_BACKEND=ray needs the ray extra: .venv/bin/pip install -e '.[ray]' ({see})"
        )
    host, _, port = settings.RAY_ADDRESS.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterUnavailable(
            "SWITCHBOARD_BACKEND=ray needs RAY_ADDRESS, the head node's host:port as "
            f"`ray start --head` printed it (e.g. 127.0.0.2:6390), not {settings.RAY_ADDRESS!r} "
            f"({see})"
        )
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as exc:
        raise ClusterUnavailable(
            f"the Ray cluster at {settings.RAY_ADDRESS} (RAY_ADDRESS) is unreachable: "
            f"{exc.strerror or exc}; start its head node with `ray start --head` ({see})"
        ) from None


def machine_limits(machine_type: str) -> dict[str, int]:
    """The resource limits a runner of this machine type applies to itself (any backend)."""
    return settings.MACHINE_TYPES.get(machine_type) or settings.MACHINE_TYPES["XS"]


class LocalProcessBackend:
    """Runners as child processes: `python -m dashboard.runtime.runner`, one per runner,
    each inside its own sandbox (sandboxed.py).

    A warm spare: most of a runner's start is importing aiohttp, uvloop and the SDK
    (BENCHMARKS.md has the figures), the same for every app. So one unassigned
    runner process is kept, in a sandbox of its own, that has done it and waits for an
    assignment on its stdin socket. Its sandbox shows an empty folder at /app and its
    own socket folder; a start fills that folder with hard links to the bundle's files
    (the bundle stays read-only: the bind is, and the files are not the sandbox uid's),
    links the runner's socket folder to its own, hands it its runner (the log file as a
    descriptor, the machine type) and at once spawns the next spare. A start that finds
    no spare (two at once, or the spare died) spawns its runner directly, as without
    spares. The cost is one idle interpreter. The spare dies with the
    runtime (PR_SET_PDEATHSIG, and EOF on its stdin), and it is never a runner the
    supervisor knows of.
    """

    def __init__(self) -> None:
        self._spare: asyncio.Task[SandboxedRunner] | None = None
        with contextlib.suppress(RuntimeError):  # No loop yet: the first start makes one.
            asyncio.get_running_loop()
            self._replenish()

    async def start(self, spec: RunnerSpec) -> SandboxedRunner:
        machine = machine_limits(spec.machine_type)
        sandbox.warn_if_disabled()
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        run_dir = spec.socket_path.parent
        # The spare's sandbox has no network; an app with outbound network starts its own,
        # held back until pasta has configured it.
        if spec.network == Network.OFF:
            process = await self._assign_spare(spec, machine)
            if process is not None:
                return process
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(spec.log_path, "ab") as log:
            return await self._exec(
                [
                    "--machine",
                    json.dumps(machine),
                    "--entrypoint",
                    spec.entrypoint,
                    "--max-multiplexing",
                    str(spec.max_multiplexing),
                ],
                bundle_dir=spec.bundle_dir,
                run_dir=run_dir,
                owned=[run_dir],
                network=spec.network,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )

    def _replenish(self) -> None:
        self._spare = asyncio.ensure_future(self._spawn_spare())

    async def _spawn_spare(self) -> SandboxedRunner:
        spare_dir = Path(settings.VAR_DIR) / "run" / f"spare-{secrets.token_hex(4)}"
        (spare_dir / "app").mkdir(parents=True)
        (spare_dir / "app").chmod(0o755)  # The sandbox's uid reads it; it owns nothing.
        (spare_dir / "run").mkdir()
        ours, theirs = socket.socketpair()
        try:
            return await self._exec(
                ["--spare"],
                bundle_dir=spare_dir / "app",
                run_dir=spare_dir / "run",
                owned=[spare_dir],
                stdin=theirs.fileno(),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=None,  # Until assigned, its errors go where the runtime's go.
                channel=ours,
            )
        except BaseException:
            ours.close()
            shutil.rmtree(spare_dir, ignore_errors=True)
            raise
        finally:
            theirs.close()

    async def _assign_spare(self, spec: RunnerSpec, machine: dict) -> SandboxedRunner | None:
        """Hand `spec` to the spare if there is a live one; None means: spawn directly."""
        task = self._spare
        if task is None or not task.done():
            if task is None:
                self._replenish()
            return None
        self._replenish()
        if task.cancelled() or task.exception() is not None:
            return None
        spare = task.result()
        if spare.returncode is not None or spare.channel is None:
            return None
        try:
            # The spare's /app is its (empty) link folder, its socket folder becomes the
            # runner's (through a link): both stay where they are, as the sandbox may still
            # be binding them.
            spare_dir = spare.owned[0]
            _link_tree(spec.bundle_dir, spare_dir / "app")
            os.symlink(spare_dir / "run", spec.socket_path.parent)
            spare.owned.append(spec.socket_path.parent)
            inside = spare.wrapped.socket_path if sandbox.enabled() else str(spec.socket_path)
            job = {
                "bundle_dir": spare.wrapped.app_dir,
                "entrypoint": spec.entrypoint,
                "socket": inside,
                "max_multiplexing": spec.max_multiplexing,
                "machine": machine,
            }
            with open(spec.log_path, "ab") as log:
                socket.send_fds(spare.channel, [json.dumps(job).encode() + b"\n"], [log.fileno()])
        except OSError:
            spare.kill()
            return None
        finally:
            spare.channel.close()
            spare.channel = None
        return spare

    async def _exec(self, runner_args: list[str], **kwargs) -> SandboxedRunner:
        return await sandboxed.start_runner(sandbox.policy(), runner_args, **kwargs)


def _link_tree(source: Path, dest: Path) -> None:
    """Fill `dest` with hard links to the files of `source` (folders are made anew)."""
    for root, dirs, files in os.walk(source):
        target = dest / os.path.relpath(root, source)
        for name in dirs:
            (target / name).mkdir(exist_ok=True)
            (target / name).chmod(0o755)
        for name in files:
            src = os.path.join(root, name)
            if os.path.islink(src):
                os.symlink(os.readlink(src), target / name)
            else:
                os.link(src, target / name)
