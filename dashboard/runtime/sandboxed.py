"""The runner sandbox's command line and the sandboxed runner process: no Django.

This is the one home of how deployed code is started. The runtime's local backend and
the deploy's import check reach it through sandbox.py (which reads the Django settings
into a `Policy`); a Ray Serve replica (ray_replica.py), on whichever node Ray put it,
gets the `Policy` in its constructor's arguments and starts its runner here too.

With the policy's mode "bwrap" (the default, SWITCHBOARD_SANDBOX) a process is started by
bubblewrap (Debian's `bubblewrap`), run by the service user (root), which sets up:

- its own PID, network, IPC, UTS and cgroup namespaces, a new session, and death with its
  parent. The network namespace has only its own loopback: no route to Redis, the
  database, the runtime admin API, the web server or a Ray node on the host's loopback.
  An app whose `network` is `outbound` gets, before its code runs, outbound connectivity
  from `pasta` (Debian's `passt`) attached to that namespace (see `pasta_argv`): pasta
  opens host sockets for the connections the namespace makes, never forwards to or from
  the host's loopback, and the namespace's own 127.0.0.1 stays its own;
- a private mount namespace on an empty tmpfs that shows, read-only, /usr (system
  libraries), the few files of /etc the interpreter needs, the Python installation and the
  venv, and of this project only the SDK and the runner module; the revision's bundle
  read-only at /app; a private tmpfs at /tmp (its one writable place besides the socket
  folder, the policy's scratch_mb at most); for a runner, its own socket folder at
  /run/switchboard, its one channel to whoever started it. Nothing else of the var dir
  and no settings module exist in there;
- a scrubbed environment: only the variables of `ENVIRONMENT` below;
- inside, `setpriv` drops to a uid and gid of its own (drawn from an unused range, so no
  two sandboxes share one and RLIMIT_NPROC counts that sandbox alone), with no
  capabilities, an empty bounding set and no_new_privs, before Python starts.

The machine type's resource limits are applied inside (see runner.apply_limits).
The mode "none" runs the same commands unwrapped, for development only (sandbox.py and
the Ray replica say so with a WARNING at every start).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib.util
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("switchboard.sandbox")

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
# The project modules a sandboxed process may import: the runner and the SDK, no more.
# Their packages' __init__ files come too; nothing imports settings or Django.
VISIBLE_SOURCES = (
    "dashboard/__init__.py",
    "dashboard/sdk",
    "dashboard/runtime/__init__.py",
    "dashboard/runtime/runner.py",
)
# What of /etc the interpreter and the C library read; nothing else of /etc is shown.
VISIBLE_ETC = ("/etc/ld.so.cache", "/etc/localtime", "/etc/ssl", "/etc/alternatives")

# Where a sandboxed process finds its bundle and its socket folder.
APP_DIR = "/app"
RUN_DIR = "/run/switchboard"
SOCKET_NAME = "runner.sock"

# The documented environment of every sandboxed process, and nothing else.
ENVIRONMENT = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "PYTHONPATH": str(PROJECT_ROOT),
    "PYTHONUNBUFFERED": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    # glibc reserves 64 MB of address space per thread arena; under the RLIMIT_AS cap of
    # the machine type that would starve a runner with many handler threads.
    "MALLOC_ARENA_MAX": "2",
}

# Sandboxes run as uids from this range, one drawn at random per sandbox: far above any
# account, so a sandboxed process owns nothing on the host but its socket folder.
UID_BASE = 2_000_000_000
UID_SPAN = 1 << 24

PASTA = "/usr/bin/pasta"  # Debian's `passt`; needed only by apps with outbound network.
# The value of controlplane.models.Network.OUTBOUND, which this module cannot import
# (tests/security/test_network.py, which sets it through the API, fails if they part).
OUTBOUND = "outbound"

# What of /etc name resolution reads; shown only to sandboxes with outbound network.
RESOLVER_ETC = ("/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/gai.conf")

PR_SET_PDEATHSIG = 1

UNSANDBOXED_WARNING = (
    "SWITCHBOARD_SANDBOX=none: deployed code runs UNSANDBOXED with the control "
    "plane's user, files and network. Use this for development only."
)


@dataclass(frozen=True)
class Policy:
    """The sandbox's settings (SWITCHBOARD_SANDBOX and its tools), as plain values that a
    Ray replica receives in its arguments: sandbox.policy() reads them from Django."""

    mode: str  # "bwrap" or "none"
    bwrap: str
    setpriv: str
    scratch_mb: int

    @property
    def enabled(self) -> bool:
        return self.mode == "bwrap"


@dataclass(frozen=True)
class Wrapped:
    """A command line ready for subprocess, and the paths as the sandboxed process sees them."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    app_dir: str
    socket_path: str | None


def new_uid() -> int:
    return UID_BASE + secrets.randbelow(UID_SPAN)


def _visible_python() -> list[str]:
    """The interpreter's installation, the venv and its site-packages, outermost first."""
    scheme = sysconfig.get_paths()
    paths = {sys.base_prefix, sys.prefix, scheme["purelib"], scheme["platlib"]}
    # Symlinked installs (pyenv shims, /usr/local links) need their real targets too.
    ordered = sorted({str(Path(p).resolve()) for p in paths} | paths)
    kept: list[str] = []
    for path in ordered:
        if os.path.exists(path) and not any(path.startswith(k + os.sep) for k in kept):
            kept.append(path)
    return kept


def _visible_sources() -> list[str]:
    """The SDK and runner files, with their compiled caches when they exist."""
    found: list[str] = []
    for rel in VISIBLE_SOURCES:
        path = PROJECT_ROOT / rel
        found.append(str(path))
        if path.suffix == ".py":
            cached = Path(importlib.util.cache_from_source(str(path)))
            if cached.exists():
                found.append(str(cached))
    return found


class _Args:
    """bwrap arguments; makes each bind target's parent folders traversable (0755).

    bwrap would otherwise copy the host's modes, and /root is 0700.
    """

    def __init__(self) -> None:
        self.argv: list[str] = []
        self._dirs: set[str] = {"/"}

    def parents(self, target: str) -> None:
        parents = list(Path(target).parents)[::-1]
        for parent in map(str, parents):
            if parent not in self._dirs:
                self._dirs.add(parent)
                self.argv += ["--perms", "0755", "--dir", parent]

    def bind(self, kind: str, source: str, target: str) -> None:
        self.parents(target)
        self.argv += [kind, source, target]
        self._dirs.add(target)


def wrap(
    policy: Policy,
    python_args: list[str],
    *,
    bundle_dir: Path,
    run_dir: Path | None = None,
    uid: int | None = None,
    info_fd: int | None = None,
    block_fd: int | None = None,
    network: str = "off",
) -> Wrapped:
    """The command line running `python *python_args` on `bundle_dir` in the sandbox.

    `run_dir` (a runner's) is the host folder bound writable at RUN_DIR for its socket;
    `info_fd`, if given, receives bwrap's JSON with the host pid of the sandbox's init,
    whose one child is the Python process. `block_fd`, if given, holds the sandboxed
    process back until a byte can be read from it: the time to attach pasta for
    `network="outbound"`, which also shows the resolver's files of /etc.
    """
    python = [sys.executable, *python_args]
    if not policy.enabled:
        socket_path = str(run_dir / SOCKET_NAME) if run_dir else None
        return Wrapped(python, dict(ENVIRONMENT), bundle_dir, str(bundle_dir), socket_path)
    uid = new_uid() if uid is None else uid
    args = _Args()
    args.argv += [
        policy.bwrap,
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        # bwrap's own init is PID 1 of the namespace and keeps this parent-death signal
        # (setpriv's change of uid would clear it in the app's process): when the runtime
        # dies, bwrap does, its init does, and with it everything in the namespace.
        "--die-with-parent",
        "--new-session",
        "--hostname",
        "sandbox",
        "--clearenv",
    ]
    for name, value in ENVIRONMENT.items():
        args.argv += ["--setenv", name, value]
    args.bind("--ro-bind", "/usr", "/usr")
    for link in ("bin", "lib", "lib64", "sbin"):
        host = Path("/") / link
        if host.is_symlink():
            args.argv += ["--symlink", os.readlink(host), str(host)]
        elif host.is_dir():
            args.bind("--ro-bind", str(host), str(host))
    for path in VISIBLE_ETC + (RESOLVER_ETC if network == OUTBOUND else ()):
        args.bind("--ro-bind-try", path, path)
    args.argv += ["--proc", "/proc", "--dev", "/dev"]
    size = str(policy.scratch_mb * 1024 * 1024)
    args.argv += ["--perms", "1777", "--size", size, "--tmpfs", "/tmp"]
    for path in _visible_python() + _visible_sources():
        args.bind("--ro-bind", path, path)
    args.bind("--ro-bind", str(bundle_dir), APP_DIR)
    socket_path = None
    if run_dir is not None:
        os.chown(run_dir, uid, uid)
        run_dir.chmod(0o700)
        args.bind("--bind", str(run_dir), RUN_DIR)
        socket_path = f"{RUN_DIR}/{SOCKET_NAME}"
    args.argv += ["--chdir", APP_DIR]
    if info_fd is not None:
        args.argv += ["--info-fd", str(info_fd)]
    if block_fd is not None:
        args.argv += ["--block-fd", str(block_fd)]
    args.argv += [
        "--",
        policy.setpriv,
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
        *python,
    ]
    # bwrap itself needs no variables; the sandboxed process gets ENVIRONMENT via --setenv.
    return Wrapped(args.argv, {"PATH": "/usr/bin:/bin"}, Path("/"), APP_DIR, socket_path)


def pasta_argv(netns_fd: int, ready_fd: int) -> list[str]:
    """pasta giving the network namespace open at `netns_fd` outbound access, and no more.

    pasta is started by the runtime (root) and joins the sandbox's namespace through a
    descriptor the runtime opened (pasta drops the capability to open another process's
    namespace itself). It writes its pid to `ready_fd` once the namespace is configured.
    Each option closes a way to the host's loopback:
    - `-t none -u none`: no host port forwards into the namespace (no inbound);
    - `-T none -U none`: no port of the namespace's loopback forwards to the host's
      loopback (pasta's default, `auto`, would mirror every host loopback listener);
    - `--no-map-gw`: the gateway address is the real gateway, never the host itself;
    - `--netns-only`: joins the namespace alone, so the sandbox stays in the host's user
      namespace and its uid is the one drawn for it;
    - `--runas 0`: pasta cannot join a namespace as nobody; it still drops to
      CAP_SYS_ADMIN and CAP_NET_BIND_SERVICE, a seccomp filter and an empty root.
    Connections to 127.0.0.1 or ::1 inside stay in the namespace (its own loopback); the
    host's own addresses are the namespace's own too (pasta copies them), so a service
    the host binds to loopback only is unreachable. A service bound to all addresses is
    reachable through an address pasta does not copy, as from any other machine.
    """
    return [
        PASTA,
        "--config-net",
        "--netns-only",
        "--netns",
        f"/proc/self/fd/{netns_fd}",
        "-t",
        "none",
        "-u",
        "none",
        "-T",
        "none",
        "-U",
        "none",
        "--no-map-gw",
        "--runas",
        "0",
        "--quiet",
        "--foreground",
        "--pid",
        f"/proc/self/fd/{ready_fd}",
    ]


def share_bundle(bundle_dir: Path) -> None:
    """Let the sandbox's uid read the bundle (it is not the bundle's owner).

    Only read and traverse bits for others are added, never write: no other local user
    reaches these files anyway, as the folders above them are private to the service user.
    """
    for root, _dirs, files in os.walk(bundle_dir):
        os.chmod(root, os.stat(root).st_mode | 0o555)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode | 0o444)


# -- a sandboxed runner process ---------------------------------------------------------


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: a runner never outlives its starter (the
    runtime, or a Ray replica's worker)."""
    libc = ctypes.CDLL(None, use_errno=True)
    # Even if the starter is SIGKILLed, the kernel then SIGKILLs this child. (The signal
    # comes when the forking thread ends: runners are started from a loop's own thread.)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # The starter already died between fork and prctl.
        os._exit(1)


class SandboxedRunner:
    """A runner.py process in its sandbox: its ready message, its end, signals to it."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        ready_reader: asyncio.StreamReader,
        init: int,
        wrapped: Wrapped,
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

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    @property
    def stdout(self) -> asyncio.StreamReader | None:
        """Its output, when it was started with stdout=PIPE."""
        return self._proc.stdout

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


async def start_runner(
    policy: Policy,
    runner_args: list[str],
    *,
    bundle_dir: Path,
    run_dir: Path,
    owned: list[Path],
    channel: socket.socket | None = None,
    network: str = "off",
    **kwargs,
) -> SandboxedRunner:
    """`python -m dashboard.runtime.runner` in a sandbox of its own, with a ready pipe.

    Unless `runner_args` starts with --spare, the runner is told its bundle and socket as
    it sees them. `kwargs` go to create_subprocess_exec (stdin, stdout, stderr).
    """
    read_fd, write_fd = os.pipe()
    info_read, info_write = os.pipe() if policy.enabled else (None, None)
    outbound = policy.enabled and network == OUTBOUND
    block_read, block_write = os.pipe() if outbound else (None, None)
    wrapped = wrap(
        policy,
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
            preexec_fn=_die_with_parent,
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
            # never runs, and the starter sees a runner that died before ready.
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
    return SandboxedRunner(proc, reader, pid, wrapped, owned, channel, pasta)


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
            *pasta_argv(netns, ready_write),
            pass_fds=(netns, ready_write),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    except OSError as exc:
        log.warning("cannot give a sandbox outbound network: %s", exc)
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
        log.warning("pasta could not configure a sandbox's outbound network")
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
