"""The runner sandbox: the one home of the command line that runs deployed code.

Every process that runs an app's code — a runner, the warm spare, the deploy-time import
check — is started through `wrap()`. With SWITCHBOARD_SANDBOX=bwrap (the default) that is
bubblewrap (Debian's `bubblewrap`), run by the service user (root), which sets up:

- its own PID, network, IPC, UTS and cgroup namespaces, a new session, and death with its
  parent. The network namespace has only its own loopback: no route to Redis, the
  database, the runtime admin API or the web server on the host's loopback. An app whose
  `network` is `outbound` gets, before its code runs, outbound connectivity from `pasta`
  (Debian's `passt`) attached to that namespace (see `pasta_argv`): pasta opens host
  sockets for the connections the namespace makes, never forwards to or from the host's
  loopback, and the namespace's own 127.0.0.1 stays its own;
- a private mount namespace on an empty tmpfs that shows, read-only, /usr (system
  libraries), the few files of /etc the interpreter needs, the Python installation and the
  venv, and of this project only the SDK and the runner module; the revision's bundle
  read-only at /app; a private tmpfs at /tmp (its one writable place besides the socket
  folder, SANDBOX_SCRATCH_MB at most); for a runner, its own socket folder at
  /run/switchboard, its one channel to the runtime. Nothing else of the var dir and no
  settings module exist in there;
- a scrubbed environment: only the variables of `ENVIRONMENT` below;
- inside, `setpriv` drops to a uid and gid of its own (drawn from an unused range, so no
  two sandboxes share one and RLIMIT_NPROC counts that sandbox alone), with no
  capabilities, an empty bounding set and no_new_privs, before Python starts.

The machine type's resource limits are applied inside (see runner.apply_limits).
SWITCHBOARD_SANDBOX=none runs the same commands unwrapped, for development only, with a
WARNING at every start.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError

from dashboard.controlplane.models import Network

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
INSTALL_HINT = "install it with `apt-get install bubblewrap`"

# What of /etc name resolution reads; shown only to sandboxes with outbound network.
RESOLVER_ETC = ("/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/gai.conf")


class SandboxUnavailable(CommandError):
    """The sandbox cannot run here; the message is one line saying what to do.

    A CommandError, so `manage.py up` and `manage.py runtime` end on that one line.
    """


@dataclass(frozen=True)
class Wrapped:
    """A command line ready for subprocess, and the paths as the sandboxed process sees them."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    app_dir: str
    socket_path: str | None


def enabled() -> bool:
    return settings.SANDBOX == "bwrap"


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
    python_args: list[str],
    *,
    bundle_dir: Path,
    run_dir: Path | None = None,
    uid: int | None = None,
    info_fd: int | None = None,
    block_fd: int | None = None,
    network: str = Network.OFF,
) -> Wrapped:
    """The command line running `python *python_args` on `bundle_dir` in the sandbox.

    `run_dir` (a runner's) is the host folder bound writable at RUN_DIR for its socket;
    `info_fd`, if given, receives bwrap's JSON with the host pid of the sandbox's init,
    whose one child is the Python process. `block_fd`, if given, holds the sandboxed
    process back until a byte can be read from it: the time to attach pasta for
    `network="outbound"`, which also shows the resolver's files of /etc.
    """
    python = [sys.executable, *python_args]
    if not enabled():
        socket = str(run_dir / SOCKET_NAME) if run_dir else None
        return Wrapped(python, dict(ENVIRONMENT), bundle_dir, str(bundle_dir), socket)
    uid = new_uid() if uid is None else uid
    args = _Args()
    args.argv += [
        settings.SANDBOX_BWRAP,
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
    for path in VISIBLE_ETC + (RESOLVER_ETC if network == Network.OUTBOUND else ()):
        args.bind("--ro-bind-try", path, path)
    args.argv += ["--proc", "/proc", "--dev", "/dev"]
    size = str(settings.SANDBOX_SCRATCH_MB * 1024 * 1024)
    args.argv += ["--perms", "1777", "--size", size, "--tmpfs", "/tmp"]
    for path in _visible_python() + _visible_sources():
        args.bind("--ro-bind", path, path)
    args.bind("--ro-bind", str(bundle_dir), APP_DIR)
    socket = None
    if run_dir is not None:
        os.chown(run_dir, uid, uid)
        run_dir.chmod(0o700)
        args.bind("--bind", str(run_dir), RUN_DIR)
        socket = f"{RUN_DIR}/{SOCKET_NAME}"
    args.argv += ["--chdir", APP_DIR]
    if info_fd is not None:
        args.argv += ["--info-fd", str(info_fd)]
    if block_fd is not None:
        args.argv += ["--block-fd", str(block_fd)]
    args.argv += [
        "--",
        settings.SANDBOX_SETPRIV,
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
    return Wrapped(args.argv, {"PATH": "/usr/bin:/bin"}, Path("/"), APP_DIR, socket)


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
    reaches these files anyway, as the var dir above them is private to the service user.
    """
    if not enabled():
        return
    for root, _dirs, files in os.walk(bundle_dir):
        os.chmod(root, os.stat(root).st_mode | 0o555)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode | 0o444)


def warn_if_disabled() -> None:
    if not enabled():
        log.warning(
            "SWITCHBOARD_SANDBOX=none: deployed code runs UNSANDBOXED with the control "
            "plane's user, files and network. Use this for development only."
        )


def ensure_available() -> None:
    """Refuse to start unless the sandbox works: runs a trivial command in it.

    Called by the runtime at start and by `manage.py up`; raises SandboxUnavailable with a
    one-line message (how to install bubblewrap when it is missing).
    """
    if not enabled():
        warn_if_disabled()
        return
    for tool, package in ((settings.SANDBOX_BWRAP, "bubblewrap"), (settings.SANDBOX_SETPRIV, "")):
        if shutil.which(tool) is None:
            hint = INSTALL_HINT if package else "it comes with util-linux"
            raise SandboxUnavailable(
                f"the runner sandbox needs {tool}, which is missing: {hint} "
                "(or set SWITCHBOARD_SANDBOX=none, for development only)"
            )
    if not os.access(PASTA, os.X_OK):
        # Not a refusal: only apps whose network is `outbound` need it, and they fail to
        # start (saying so in the runtime's log) until it is installed.
        log.warning(
            "%s is missing: apps with network `outbound` cannot start; install it with "
            "`apt-get install passt`",
            PASTA,
        )
    probe = wrap(["-I", "-c", "import os; print(os.getuid())"], bundle_dir=Path(sys.prefix))
    try:
        done = subprocess.run(
            probe.argv, env=probe.env, cwd=probe.cwd, capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired:
        raise SandboxUnavailable("the runner sandbox did not answer within 30 s") from None
    if done.returncode != 0 or not done.stdout.strip().isdigit() or done.stdout.strip() == "0":
        why = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
        raise SandboxUnavailable(
            f"the runner sandbox ({settings.SANDBOX_BWRAP}) does not work here: {why} "
            "(or set SWITCHBOARD_SANDBOX=none, for development only)"
        )
