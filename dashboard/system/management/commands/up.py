"""`manage.py up [--demo]`: the whole system in one command, for a newcomer's first minute.

It migrates, makes a local admin and an API token (written where the CLI finds them),
starts the web/API server, the runtime and a Celery worker with beat as child processes,
waits until each answers, optionally seeds the demo app through the control API, and
then supervises: if a child dies it says which and stops the rest; Ctrl-C or SIGTERM
stops everything (the runtime takes its runner processes with it).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from dashboard import httpclient
from dashboard.api_client import ApiError, ControlApi
from dashboard.cli import config as cli_config
from dashboard.runtime import sandbox
from dashboard.system import accounts, demo
from dashboard.system.supervisor import (
    Child,
    ChildFailed,
    Supervisor,
    runtime_command,
    worker_command,
)

STARTUP_TIMEOUT = 90.0


def _answers(url: str) -> bool:
    response = httpclient.request("GET", url, service="health check", timeout=2, retries=0)
    return response.status_code == 200


def _worker_answers(name: str) -> bool:
    from dashboard.celery import app as celery_app

    return bool(celery_app.control.ping(destination=[name], timeout=0.5))


def _raise_interrupt(*_: object) -> None:
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = "Run the web/API server, runtime and Celery worker together (optionally with a demo)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--demo", dest="seed_demo", action="store_true", help="Seed the demo app."
        )
        parser.add_argument(
            "--web-port",
            type=int,
            default=int(os.environ.get("SWITCHBOARD_WEB_PORT") or 8000),
            help="Port of the dashboard and control API (default 8000, or SWITCHBOARD_WEB_PORT).",
        )

    def say(self, message: str) -> None:
        self.stdout.write(message)
        self.stdout.flush()

    def handle(self, *args, seed_demo: bool = False, web_port: int = 8000, **options) -> None:
        # Health checks and demo calls would otherwise log every request over the summary.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        var_dir = Path(settings.VAR_DIR)
        web_url = f"http://127.0.0.1:{web_port}"
        api_url = os.environ.get("SWITCHBOARD_API_URL") or web_url

        sandbox.ensure_available()  # Refuse to start if deployed code cannot be sandboxed.
        self.say("Preparing the database and static files...")
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        user, password = accounts.ensure_admin(var_dir)
        token = accounts.ensure_token(user, var_dir)
        config_file = cli_config.config_path()
        cli_config.write_file(config_file, api_url, token)

        env = {
            **os.environ,
            "SWITCHBOARD_VAR_DIR": str(var_dir),
            "SWITCHBOARD_API_URL": api_url,
            "PYTHONUNBUFFERED": "1",
        }
        supervisor = Supervisor(env=env, cwd=Path(settings.BASE_DIR))
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        # Set explicitly: a shell starts a background job (`make demo &`) with SIGINT
        # ignored, and Python then leaves it ignored, so `kill -INT` would do nothing.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        failure = ""
        try:
            self._start_all(supervisor, var_dir, web_port)
            if seed_demo:
                self._seed_demo(api_url, token, var_dir)
            self._summary(web_url, api_url, password, var_dir, config_file, seed_demo)
            gone = supervisor.watch()
            if gone is not None:
                failure = (
                    f"{gone.name} exited unexpectedly with status {gone.proc.returncode}; "
                    f"stopping everything. Last lines of {gone.log_path}:\n{gone.log_tail()}"
                )
        except KeyboardInterrupt:
            self.say("\nStopping...")
        except (ChildFailed, demo.DemoError) as exc:
            failure = str(exc)
        finally:
            # A second Ctrl-C must not cut the clean-up short: stop_all ends in SIGKILL anyway.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            supervisor.stop_all()
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, previous)
        if failure:
            raise CommandError(failure)
        self.say("All processes stopped.")

    def _start_all(self, supervisor: Supervisor, var_dir: Path, web_port: int) -> None:
        logs = var_dir / "logs"
        worker_name = f"switchboard-up-{os.getpid()}@{socket.gethostname()}"
        python = sys.executable
        children = [
            Child(
                "web",
                [
                    python,
                    "-m",
                    "gunicorn",
                    "dashboard.wsgi",
                    "-b",
                    f"127.0.0.1:{web_port}",
                    "--workers",
                    "2",
                    "--threads",
                    "4",
                    "--timeout",
                    "120",
                    "--graceful-timeout",
                    "10",
                    "--access-logfile",
                    "-",
                ],
                logs / "web.log",
                lambda: _answers(f"http://127.0.0.1:{web_port}/admin/login/"),
            ),
            Child(
                "runtime",
                runtime_command(),
                logs / "runtime.log",
                lambda: _answers(settings.RUNTIME_URL.rstrip("/") + "/health"),
            ),
            Child(
                "worker",
                worker_command(var_dir / "celerybeat-schedule", worker_name),
                logs / "worker.log",
                lambda: _worker_answers(worker_name),
            ),
        ]
        for child in children:
            self.say(f"Starting {child.name} (log: {child.log_path})...")
            supervisor.start(child)
        for child in children:
            supervisor.wait_healthy(child, STARTUP_TIMEOUT)
            self.say(f"  {child.name} is up")

    def _seed_demo(self, api_url: str, token: str, var_dir: Path) -> None:
        self.say("Seeding the demo app through the control API...")
        api = ControlApi(api_url, token, source="api", timeout=60)
        examples = Path(settings.BASE_DIR) / "examples"
        try:
            demo.seed(api, examples, var_dir / "demo-src", lambda m: self.say("  " + m))
        except ApiError as exc:
            raise demo.DemoError(f"seeding the demo failed: {exc.message}") from None
        except httpclient.Unavailable as exc:
            raise demo.DemoError(f"seeding the demo failed: {exc}") from None

    def _summary(
        self,
        web_url: str,
        api_url: str,
        password: str,
        var_dir: Path,
        config_file: Path,
        seeded: bool,
    ) -> None:
        cli = ".venv/bin/switchboard"
        gateway = settings.GATEWAY_URL.rstrip("/")
        lines = [
            "",
            "Switchboard is running.",
            "",
            f"  Dashboard    {web_url}/",
            f"               sign in as admin / {password}   (also in {var_dir / 'admin-password'})",
            f"  Control API  {api_url}/api/v1/",
            f"  Gateway      {gateway}/<app>/<endpoint path>",
        ]
        entry, class_name = demo.find_entry(Path(settings.BASE_DIR) / "examples" / "demo")
        if seeded:
            path = demo.first_endpoint(entry)
            lines.append(f"               curl {gateway}/{demo.APP_NAME}{path}")
        lines += [
            "",
            f"  CLI          the admin token is saved in {config_file}; try:",
            f"               {cli} apps list",
            f"               {cli} apps list-rev demo"
            if seeded
            else f"               {cli} --help",
            f"               {cli} deploy examples/demo/{entry.name}::{class_name} --app-name my-app",
            "",
            f"  Logs         {var_dir / 'logs'}/{{web,runtime,worker}}.log",
            "",
            "Press Ctrl-C to stop everything.",
        ]
        self.say("\n".join(lines))
