"""Starting, restarting and stopping the processes that make up a running Switchboard.

Plain Python with no Django in it, so it can be read and tested on its own. Each child
runs in its own session (process group): a Ctrl-C in the terminal reaches only the
supervisor, which then stops the children in reverse order, giving each time to drain.
A child that dies is started again at once, and again after a growing pause if it keeps
dying, while the others go on: one crash is never an outage.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


def web_command(port: int) -> list[str]:
    """The dashboard and control API: granian serving dashboard/asgi.py.

    A slow client costs a coroutine, not a thread (see dashboard/asgi.py), and granian
    closes a connection whose headers stall past GRANIAN_HTTP1_HEADER_READ_TIMEOUT
    (milliseconds, default 30000; granian reads its GRANIAN_* variables itself).
    asginl: Django has no lifespan events. Sync views run one at a time per worker (in
    asgiref's thread), so four workers keep four requests in progress at once.
    BENCHMARKS.md "Web server under slow clients" compares it with gunicorn's threads.
    """
    return [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "asginl",
        "dashboard.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "4",
        "--respawn-failed-workers",
        "--workers-kill-timeout",
        "10",
        "--access-log",
    ]


def runtime_command() -> list[str]:
    """The runtime: gateway, admin API and runner supervisor in one process."""
    return [sys.executable, "manage.py", "runtime"]


def worker_command(name: str | None = None) -> list[str]:
    """A Celery worker: runs operations and the sweeper's ticks."""
    command = [sys.executable, "-m", "celery", "-A", "dashboard", "worker"]
    command += ["--concurrency", "4", "--loglevel", "INFO"]
    return command + (["-n", name] if name else [])


def beat_command(schedule: Path) -> list[str]:
    """Celery beat, which schedules the operations sweeper.

    A process of its own, supervised like the others: embedded in a worker (`--beat`) it
    died unnoticed, and with it the only path that ends an operation whose worker died.
    """
    command = [sys.executable, "-m", "celery", "-A", "dashboard", "beat", "--loglevel", "INFO"]
    return command + ["--schedule", str(schedule)]


# A child that stayed up this long had a one-off crash, not a crash loop.
STABLE_AFTER = 60.0
RESTART_BACKOFF_CAP = 30.0


def restart_delay(crashes: int) -> float:
    """Seconds to wait before the restart after `crashes` quick crashes in a row.

    The first is restarted at once (the gateway must be back within seconds of a runtime
    crash); a loop backs off 1, 2, 4 ... up to the cap, so it neither spins nor gives up.
    """
    return 0.0 if crashes <= 1 else min(RESTART_BACKOFF_CAP, 2.0 ** (crashes - 2))


class ChildFailed(Exception):
    """A child exited, or never became healthy; the message names it and says why."""


@dataclass
class Child:
    name: str
    cmd: list[str]
    log_path: Path
    healthy: Callable[[], bool]
    # Infrastructure the others use until they have stopped (the embedded Redis).
    stop_last: bool = False
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    crashes: int = 0  # Quick crashes in a row, for restart_delay().

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Supervisor:
    env: dict[str, str]
    cwd: Path
    children: list[Child] = field(default_factory=list)
    stopping: bool = False

    def start(self, child: Child) -> Child:
        self._spawn(child)
        self.children.append(child)
        return child

    def _spawn(self, child: Child) -> None:
        child.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(child.log_path, "ab")  # noqa: SIM115 - the child owns it for its lifetime.
        try:
            child.proc = subprocess.Popen(
                child.cmd,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        child.started_at = time.monotonic()

    def wait_healthy(self, child: Child, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stopping:
                raise ChildFailed("stopping before everything was up")
            if not child.running:
                raise ChildFailed(
                    f"{child.name} exited with status {child.proc.returncode} while starting; "
                    f"last lines of {child.log_path}:\n{child.log_tail()}"
                )
            try:
                if child.healthy():
                    return
            except Exception:  # noqa: BLE001 - not answering yet is the normal case.
                pass
            time.sleep(0.2)
        raise ChildFailed(
            f"{child.name} did not become healthy within {timeout:.0f}s; "
            f"last lines of {child.log_path}:\n{child.log_tail()}"
        )

    def supervise(self, say: Callable[[str], None], interval: float = 0.2) -> None:
        """Until stop_all() begins, restart every child that exits, saying why.

        Before a restart the dead child's process group is emptied, so nothing it left
        behind (a gunicorn worker whose master died, a pool process) holds its port.
        """
        due: dict[str, float] = {}
        while not self.stopping:
            now = time.monotonic()
            for child in self.children:
                if child.running or self.stopping:
                    continue
                if child.name not in due:
                    if now - child.started_at > STABLE_AFTER:
                        child.crashes = 0
                    child.crashes += 1
                    delay = restart_delay(child.crashes)
                    due[child.name] = now + delay
                    when = "now" if delay == 0 else f"in {delay:g}s"
                    say(
                        f"{child.name} exited with status {child.proc.returncode}; restarting "
                        f"it {when} (crash {child.crashes} in a row). "
                        f"Last lines of {child.log_path}:\n{child.log_tail()}"
                    )
                    _signal_group(child, signal.SIGKILL)
                if now >= due[child.name]:
                    del due[child.name]
                    self._spawn(child)
                    say(f"{child.name} restarted (pid {child.proc.pid})")
            time.sleep(interval)

    def stop_all(self, timeout: float = 30.0) -> None:
        """SIGTERM every child's process group at once; SIGKILL what outlives the timeout.

        Asking all of them together lets each drain in parallel (the runtime lets its
        runners finish in-flight requests) while the slowest bounds the wait. Children
        marked stop_last go after the others, which need them while they drain.
        """
        self.stopping = True
        deadline = time.monotonic() + timeout
        for last in (False, True):
            wave = [c for c in reversed(self.children) if c.stop_last is last]
            for child in wave:
                _signal_group(child, signal.SIGTERM)
            while any(c.running for c in wave) and time.monotonic() < deadline:
                time.sleep(0.1)
            for child in wave:
                # Anything still running, or left behind in the child's group, goes now.
                _signal_group(child, signal.SIGKILL)


def _signal_group(child: Child, sig: signal.Signals) -> None:
    if child.proc is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.proc.pid, sig)
    if sig == signal.SIGKILL and child.proc.poll() is None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.proc.wait(5)
