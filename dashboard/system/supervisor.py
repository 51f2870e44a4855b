"""Starting, watching and stopping the processes that make up a running Switchboard.

Plain Python with no Django in it, so it can be read and tested on its own. Each child
runs in its own session (process group): a Ctrl-C in the terminal reaches only the
supervisor, which then stops the children in reverse order, giving each time to drain.
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


def runtime_command() -> list[str]:
    """The runtime: gateway, admin API and runner supervisor in one process."""
    return [sys.executable, "manage.py", "runtime"]


def worker_command(schedule: Path, name: str | None = None) -> list[str]:
    """A Celery worker with beat embedded, which schedules the operations sweeper."""
    command = [sys.executable, "-m", "celery", "-A", "dashboard", "worker", "--beat"]
    command += ["--concurrency", "4", "--loglevel", "INFO", "--schedule", str(schedule)]
    return command + (["-n", name] if name else [])


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
        self.children.append(child)
        return child

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

    def exited(self) -> Child | None:
        """The first child that is no longer running, if any."""
        return next((c for c in self.children if not c.running), None)

    def watch(self, interval: float = 0.5) -> Child | None:
        """Block until a child exits (returned) or stop_all() began (None)."""
        while not self.stopping:
            gone = self.exited()
            if gone is not None:
                return gone
            time.sleep(interval)
        return None

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
