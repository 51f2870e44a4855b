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
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from django.conf import settings
from django.core.management.base import CommandError

from dashboard.controlplane.models import Network
from dashboard.runtime import sandbox

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


def _die_with_runtime() -> None:
    """Runs in the child between fork and exec: a runner never outlives the runtime."""
    libc = ctypes.CDLL(None, use_errno=True)
    # Even if the runtime is SIGKILLed, the kernel then SIGKILLs this child.
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # The runtime already died between fork and prctl.
        os._exit(1)


def _machine(spec: RunnerSpec) -> dict[str, int]:
    return settings.MACHINE_TYPES.get(spec.machine_type) or settings.MACHINE_TYPES["XS"]


class LocalProcess:
    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        ready_reader: asyncio.StreamReader,
        init: int,
        wrapped: sandbox.Wrapped,
        owned: list[Path],
        channel: socket.socket | None = None,
        network: asyncio.subprocess.Process | None = None,
    ):
        self._proc = proc
        self._ready_reader = ready_reader
        # Sandboxed, `init` is bwrap's PID 1 of the sandbox, and the Python process is its
        # child, found once it exists; unsandboxed, both are the child itself. Signals go
        # through pidfds, so none reaches a process that reused a pid after these ended.
        self._init = init
        self._pid: int | None = init if init == proc.pid else None
        self._pidfds: dict[int, int] = {}
        self._open_pidfd(init)
        self.wrapped = wrapped  # Its paths as it sees them.
        self.owned = owned  # Host folders made for it, removed when it ends.
        self.channel = channel  # A spare's assignment socket.
        self.network = network  # Its pasta, when the app has outbound network.

    @property
    def pid(self) -> int:
        """The Python process's host pid (the sandbox's init until that child exists)."""
        if self._pid is None and self._proc.returncode is None:
            self._pid = _only_child(self._init)
            if self._pid is not None:
                self._open_pidfd(self._pid)
        return self._pid or self._init

    def _open_pidfd(self, pid: int) -> None:
        # Opened as soon as the pid is known, while the process surely is that one.
        with contextlib.suppress(OSError):
            self._pidfds[pid] = os.pidfd_open(pid)

    async def ready_message(self) -> str:
        # The runner writes one message and closes its end, so EOF ends the message; a
        # runner that dies before writing closes it too, which reads as "".
        data = await self._ready_reader.read()
        return data.decode(errors="replace").strip()

    async def wait(self) -> int:
        code = await self._proc.wait()
        if self.network is not None and self.network.returncode is None:
            self.network.terminate()  # pasta would keep the emptied namespace forever.
            await self.network.wait()
        for fd in self._pidfds.values():
            os.close(fd)
        self._pidfds.clear()
        for folder in self.owned:
            remove(folder)
        if self._init != self._proc.pid and code > 128:
            # bwrap reports its child's death by signal N as exit code 128 + N.
            return -(code - 128)
        return code

    def _signal(self, pid: int, sig: int) -> None:
        if self._proc.returncode is None and (fd := self._pidfds.get(pid)) is not None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(fd, sig)

    def terminate(self) -> None:
        # To the Python process: its handler starts teardown(). (The sandbox's init would
        # ignore it.) Terminate is asked of ready runners, whose process surely exists.
        self._signal(self.pid, signal.SIGTERM)

    def kill(self) -> None:
        # SIGKILL to the sandbox's init ends everything in its PID namespace.
        self._signal(self._init, signal.SIGKILL)
        self._signal(self.pid, signal.SIGKILL)
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()


class LocalProcessBackend:
    """Runners as child processes: `python -m dashboard.runtime.runner`, one per runner,
    each inside its own sandbox (sandbox.py).

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
        self._spare: asyncio.Task[LocalProcess] | None = None
        with contextlib.suppress(RuntimeError):  # No loop yet: the first start makes one.
            asyncio.get_running_loop()
            self._replenish()

    async def start(self, spec: RunnerSpec) -> LocalProcess:
        machine = _machine(spec)
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

    async def _spawn_spare(self) -> LocalProcess:
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
        if spare._proc.returncode is not None or spare.channel is None:
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

    async def _exec(
        self,
        runner_args: list[str],
        *,
        bundle_dir: Path,
        run_dir: Path,
        owned: list[Path],
        channel: socket.socket | None = None,
        network: str = Network.OFF,
        **kwargs,
    ) -> LocalProcess:
        read_fd, write_fd = os.pipe()
        info_read, info_write = os.pipe() if sandbox.enabled() else (None, None)
        outbound = sandbox.enabled() and network == Network.OUTBOUND
        block_read, block_write = os.pipe() if outbound else (None, None)
        wrapped = sandbox.wrap(
            ["-m", "dashboard.runtime.runner", "--ready-fd", str(write_fd)],
            bundle_dir=bundle_dir,
            run_dir=run_dir,
            info_fd=info_write,
            block_fd=block_read,
            network=network,
        )
        argv = list(wrapped.argv)
        if runner_args[0] != "--spare":
            argv += ["--bundle-dir", wrapped.app_dir, "--socket", str(wrapped.socket_path)]
        argv += runner_args
        pass_fds = tuple(fd for fd in (write_fd, info_write, block_read) if fd is not None)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=wrapped.cwd,
                env=wrapped.env,
                pass_fds=pass_fds,
                # Its own session: a Ctrl-C in the runtime's terminal reaches only the
                # runtime, which then stops its runners in order.
                start_new_session=True,
                preexec_fn=_die_with_runtime,
                **kwargs,
            )
        except BaseException:
            os.close(read_fd)
            for fd in (info_read, block_write):
                if fd is not None:
                    os.close(fd)
            raise
        finally:
            for fd in (write_fd, info_write, block_read):
                if fd is not None:
                    os.close(fd)
        pid = proc.pid
        if info_read is not None:
            pid = await _sandboxed_pid(info_read, proc.pid)
        pasta = None
        if block_write is not None:
            pasta = await _attach_network(pid) if pid != proc.pid else None
            if pasta is None:
                # Closing the block pipe would let bwrap go on (EOF reads as "go"), so it
                # stays open until the sandbox, killed here, has ended: the app's code
                # never runs, and the supervisor sees a runner that died before ready.
                # The sandbox's init outlives bwrap's own process, so it is killed first.
                with contextlib.suppress(OSError):
                    init = os.pidfd_open(pid)
                    try:
                        signal.pidfd_send_signal(init, signal.SIGKILL)
                    finally:
                        os.close(init)
                proc.kill()
                asyncio.ensure_future(_close_when_ended(proc, block_write))
            else:
                os.write(block_write, b"go")
                os.close(block_write)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", buffering=0)
        )
        return LocalProcess(proc, reader, pid, wrapped, owned, channel, pasta)


async def _close_when_ended(proc: asyncio.subprocess.Process, fd: int) -> None:
    try:
        await proc.wait()
    finally:
        os.close(fd)


async def _attach_network(init_pid: int) -> asyncio.subprocess.Process | None:
    """Start pasta on the network namespace of the sandbox whose init is `init_pid`.

    Returns once pasta has configured it (it writes its pid then), or None if it could not.
    """
    try:
        netns = os.open(f"/proc/{init_pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None  # The sandbox is already gone.
    ready_read, ready_write = os.pipe()
    try:
        pasta = await asyncio.create_subprocess_exec(
            *sandbox.pasta_argv(netns, ready_write),
            pass_fds=(netns, ready_write),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_runtime,
        )
    except OSError as exc:
        sandbox.log.warning("cannot give a sandbox outbound network: %s", exc)
        os.close(ready_read)
        return None
    finally:
        os.close(netns)
        os.close(ready_write)
    loop = asyncio.get_running_loop()
    # pasta keeps its inherited copy of the pipe, so the pid line, not EOF, says ready;
    # a pasta that fails exits, and its copy closing gives EOF.
    with os.fdopen(ready_read, "rb", buffering=0) as ready:
        line = await loop.run_in_executor(None, ready.readline)
    if not line.strip().isdigit():
        sandbox.log.warning("pasta could not configure a sandbox's outbound network")
        if pasta.returncode is None:
            pasta.kill()
        await pasta.wait()
        return None
    return pasta


def remove(folder: Path) -> None:
    """Remove a runner's folder, or the link that stands for it."""
    if folder.is_symlink():
        folder.unlink(missing_ok=True)
    else:
        shutil.rmtree(folder, ignore_errors=True)


def _only_child(pid: int) -> int | None:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


async def _sandboxed_pid(info_fd: int, fallback: int) -> int:
    """The host pid of the sandbox's init, from the JSON bwrap writes on its info fd."""
    loop = asyncio.get_running_loop()
    with os.fdopen(info_fd, "rb") as info:
        data = await loop.run_in_executor(None, info.read)
    try:
        return int(json.loads(data)["child-pid"])
    except (ValueError, KeyError, TypeError):
        return fallback  # bwrap failed before starting it; its exit code says why.


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
