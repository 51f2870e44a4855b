"""The runner sandbox, as the Django settings configure it (SWITCHBOARD_SANDBOX).

What the sandbox is, and its command line, live in sandboxed.py (no Django, so a Ray
replica on any node uses the same). Here: the settings as a `Policy`, the command line
under that policy, and the checks the runtime and `manage.py up` make before starting.
With SWITCHBOARD_SANDBOX=none every process runs unwrapped, for development only, with a
WARNING at every start.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError

from dashboard.runtime import sandboxed
from dashboard.runtime.sandboxed import PASTA, Wrapped, log

INSTALL_HINT = "install it with `apt-get install bubblewrap`"


class SandboxUnavailable(CommandError):
    """The sandbox cannot run here; the message is one line saying what to do.

    A CommandError, so `manage.py up` and `manage.py runtime` end on that one line.
    """


def policy() -> sandboxed.Policy:
    return sandboxed.Policy(
        mode=settings.SANDBOX,
        bwrap=settings.SANDBOX_BWRAP,
        setpriv=settings.SANDBOX_SETPRIV,
        scratch_mb=settings.SANDBOX_SCRATCH_MB,
    )


def enabled() -> bool:
    return policy().enabled


def wrap(python_args: list[str], *, bundle_dir: Path) -> Wrapped:
    """The command line running `python *python_args` on `bundle_dir` in the sandbox, under
    the settings' policy (runners are started by sandboxed.start_runner)."""
    return sandboxed.wrap(policy(), python_args, bundle_dir=bundle_dir)


def share_bundle(bundle_dir: Path) -> None:
    """Let the sandbox's uid read the bundle (sandboxed.share_bundle), when sandboxed."""
    if enabled():
        sandboxed.share_bundle(bundle_dir)


def warn_if_disabled() -> None:
    if not enabled():
        log.warning(sandboxed.UNSANDBOXED_WARNING)


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
