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
import os
import resource
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from django.conf import settings

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


def _limit_child(memory_mb: int, nice: int) -> None:
    """Runs in the child between fork and exec: die with the runtime, apply the machine type."""
    libc = ctypes.CDLL(None, use_errno=True)
    # A runner must never outlive the runtime, even if the runtime is SIGKILLed.
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # The runtime already died between fork and prctl.
        os._exit(1)
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if nice:
        os.nice(nice)


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
    """Runners as child processes: `python -m dashboard.runtime.runner`, one per runner."""

    async def start(self, spec: RunnerSpec) -> LocalProcess:
        machine = settings.MACHINE_TYPES.get(spec.machine_type) or settings.MACHINE_TYPES["XS"]
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        spec.socket_path.parent.mkdir(parents=True, exist_ok=True)
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
        with open(spec.log_path, "ab") as log:
            try:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "dashboard.runtime.runner",
                    "--bundle-dir",
                    str(spec.bundle_dir),
                    "--entrypoint",
                    spec.entrypoint,
                    "--socket",
                    str(spec.socket_path),
                    "--ready-fd",
                    str(write_fd),
                    "--max-multiplexing",
                    str(spec.max_multiplexing),
                    cwd=spec.bundle_dir,
                    env=env,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                    pass_fds=(write_fd,),
                    # Its own session: a Ctrl-C in the runtime's terminal reaches only the
                    # runtime, which then stops its runners in order.
                    start_new_session=True,
                    preexec_fn=lambda: _limit_child(machine["memory_mb"], machine["nice"]),
                )
            finally:
                os.close(write_fd)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", buffering=0)
        )
        return LocalProcess(proc, reader)
