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
import ctypes
import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from django.conf import settings

from dashboard.runtime.runner import apply_machine_type

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
PR_SET_PDEATHSIG = 1


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


def _die_with_runtime() -> None:
    """Runs in the child between fork and exec: a runner never outlives the runtime."""
    libc = ctypes.CDLL(None, use_errno=True)
    # Even if the runtime is SIGKILLed, the kernel then SIGKILLs this child.
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # The runtime already died between fork and prctl.
        os._exit(1)


def _limit_child(memory_mb: int, nice: int) -> None:
    """Runs in the child between fork and exec: die with the runtime, apply the machine type."""
    _die_with_runtime()
    apply_machine_type(memory_mb, nice)


class LocalProcess:
    def __init__(self, proc: asyncio.subprocess.Process, ready_reader: asyncio.StreamReader):
        self._proc = proc
        self._ready_reader = ready_reader
        self.pid = proc.pid

    async def ready_message(self) -> str:
        # The runner writes one message and closes its end, so EOF ends the message; a
        # runner that dies before writing closes it too, which reads as "".
        data = await self._ready_reader.read()
        return data.decode(errors="replace").strip()

    async def wait(self) -> int:
        return await self._proc.wait()

    def _signal(self, sig: int) -> None:
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(sig)

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)


class LocalProcessBackend:
    """Runners as child processes: `python -m dashboard.runtime.runner`, one per runner.

    A warm spare: most of a runner's start is importing aiohttp, uvloop and the SDK
    (about 300 ms on a quiet 2-core machine), the same for every app. So one unassigned
    runner process is kept that has done it and waits for an assignment on stdin; a start
    hands it its runner (bundle, socket, log, machine type) and at once spawns the next
    spare. A start that finds no spare (two at once, or the spare died) spawns its runner
    directly, as without spares. The cost is one idle interpreter, about 40 MB. The spare
    dies with the runtime (PR_SET_PDEATHSIG, and EOF on its stdin), and it is never a
    runner the supervisor knows of.
    """

    def __init__(self) -> None:
        self._spare: asyncio.Task[LocalProcess] | None = None
        with contextlib.suppress(RuntimeError):  # No loop yet: the first start makes one.
            asyncio.get_running_loop()
            self._replenish()

    async def start(self, spec: RunnerSpec) -> LocalProcess:
        machine = settings.MACHINE_TYPES.get(spec.machine_type) or settings.MACHINE_TYPES["XS"]
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        spec.socket_path.parent.mkdir(parents=True, exist_ok=True)
        process = await self._assign_spare(spec, machine)
        if process is not None:
            return process
        with open(spec.log_path, "ab") as log:
            return await self._exec(
                "--bundle-dir",
                str(spec.bundle_dir),
                "--entrypoint",
                spec.entrypoint,
                "--socket",
                str(spec.socket_path),
                "--max-multiplexing",
                str(spec.max_multiplexing),
                cwd=spec.bundle_dir,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                preexec_fn=lambda: _limit_child(machine["memory_mb"], machine["nice"]),
            )

    def _replenish(self) -> None:
        self._spare = asyncio.ensure_future(
            self._exec(
                "--spare",
                cwd=Path("/"),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=None,  # Until assigned, its errors go where the runtime's go.
                preexec_fn=_die_with_runtime,
            )
        )

    async def _assign_spare(self, spec: RunnerSpec, machine: dict) -> LocalProcess | None:
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
        if spare._proc.returncode is not None:
            return None
        job = {
            "bundle_dir": str(spec.bundle_dir),
            "entrypoint": spec.entrypoint,
            "socket": str(spec.socket_path),
            "log_path": str(spec.log_path),
            "max_multiplexing": spec.max_multiplexing,
            "memory_mb": machine["memory_mb"],
            "nice": machine["nice"],
        }
        stdin = spare._proc.stdin
        assert stdin is not None
        try:
            stdin.write(json.dumps(job).encode() + b"\n")
            await stdin.drain()
            stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            spare.kill()
            return None
        return spare

    async def _exec(self, *args: str, cwd: Path, **kwargs) -> LocalProcess:
        read_fd, write_fd = os.pipe()
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
            "PYTHONUNBUFFERED": "1",
            # glibc reserves 64 MB of address space per thread arena; under the RLIMIT_AS
            # cap of the machine type that would starve a runner with many handler threads.
            "MALLOC_ARENA_MAX": "2",
        }
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "dashboard.runtime.runner",
                "--ready-fd",
                str(write_fd),
                *args,
                cwd=cwd,
                env=env,
                pass_fds=(write_fd,),
                # Its own session: a Ctrl-C in the runtime's terminal reaches only the
                # runtime, which then stops its runners in order.
                start_new_session=True,
                **kwargs,
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", buffering=0)
        )
        return LocalProcess(proc, reader)
