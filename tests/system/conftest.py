"""What the system tests share: one `manage.py up` installation of their own, run for real."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / ".venv" / "bin" / "switchboard"
READY = "Switchboard is running."


def processes_with(marker: str) -> set[int]:
    """Live (non-zombie) processes whose environment mentions marker: everything up started."""
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker.encode() not in (proc / "environ").read_bytes():
                continue
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            found.add(int(proc.name))
    return found


@dataclass
class Run:
    output: str = ""
    exit_code: int | None = None
    revisions: list[dict] = field(default_factory=list)
    greeting: dict = field(default_factory=dict)
    children_while_running: set[int] = field(default_factory=set)
    left_behind: set[int] = field(default_factory=set)


class Home:
    """Everything one `up` installation owns: var dir, config dir, Redis and ports."""

    def __init__(self, base: Path, redis_url: str | None = None):
        self.var_dir = base / "var"
        self.config_home = base / "config"
        self.web_port, self.gateway_port, self.runtime_port = free_port(), free_port(), free_port()
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SWITCHBOARD_", "CELERY_"))
            and k not in ("DATABASE_URL", "REDIS_URL")
        }
        self.env.update(
            {
                "SWITCHBOARD_VAR_DIR": str(self.var_dir),
                "XDG_CONFIG_HOME": str(self.config_home),
                # Unless told otherwise, nothing answers where up looks for a shared Redis,
                # so it starts its own.
                "SWITCHBOARD_DEFAULT_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
                **({"REDIS_URL": redis_url} if redis_url else {}),
                "SWITCHBOARD_WEB_PORT": str(self.web_port),
                "SWITCHBOARD_GATEWAY_PORT": str(self.gateway_port),
                "SWITCHBOARD_RUNTIME_PORT": str(self.runtime_port),
                "PYTHONUNBUFFERED": "1",
            }
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        # Only XDG_CONFIG_HOME: the CLI must find the URL and token that `up` wrote.
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
        env["XDG_CONFIG_HOME"] = str(self.config_home)
        return subprocess.run(
            [str(CLI), *args], env=env, capture_output=True, text=True, timeout=60
        )

    def run_up(
        self,
        run: Run,
        while_running,
        *,
        stop: bool = True,
        stop_signal: signal.Signals = signal.SIGTERM,
        background: bool = False,
    ) -> None:
        log_path = self.var_dir.parent / f"up-{time.monotonic_ns()}.out"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "manage.py", "up", "--demo"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # What a shell does to a background job (`make demo &`): SIGINT ignored.
                preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
                if background
                else None,
            )
        try:
            wait_until(
                lambda: READY in log_path.read_text() or proc.poll() is not None,
                timeout=240,
                interval=0.5,
                what="`manage.py up --demo` to finish starting",
            )
            assert proc.poll() is None, log_path.read_text()
            while_running(run)
            run.children_while_running = processes_with(str(self.var_dir))
            if stop:
                proc.send_signal(stop_signal)
            run.exit_code = proc.wait(90)
            run.left_behind = processes_with(str(self.var_dir))
        finally:
            if proc.poll() is None:
                # A failed check: let up stop its children before forcing anything.
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)
            for pid in processes_with(str(self.var_dir)):
                # Only processes carrying this test's own VAR_DIR: never anyone else's.
                os.kill(pid, signal.SIGKILL)
            run.output = log_path.read_text()
