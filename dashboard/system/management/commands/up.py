"""`manage.py up [--demo]`: the whole system in one command, for a newcomer's first minute.

It migrates, makes a local admin and an API token (written where the CLI finds them),
starts the web/API server, the runtime, a Celery worker and beat as child processes,
waits until each answers, optionally seeds the demo app through the control API, and
then supervises: a child that dies is restarted (at once, then backing off if it keeps
dying) while the rest go on; Ctrl-C or SIGTERM stops everything (the runtime takes its
runner processes with it). A second `up` on the same var dir or ports refuses at once.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import socket
from pathlib import Path

from celery import Celery
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from dashboard import httpclient
from dashboard.api_client import ApiError, ControlApi
from dashboard.cli import config as cli_config
from dashboard.runtime import backend, sandbox
from dashboard.system import accounts, demo, exclusive, redis_service
from dashboard.system.supervisor import (
    Child,
    ChildFailed,
    Supervisor,
    beat_command,
    runtime_command,
    web_command,
    worker_command,
)

STARTUP_TIMEOUT = 90.0


def _answers(url: str) -> bool:
    response = httpclient.request("GET", url, service="health check", timeout=2, retries=0)
    return response.status_code == 200


@functools.cache
def _pinger(broker_url: str) -> Celery:
    # A bare app on the children's broker: this process's own Celery settings were read
    # before `up` chose Redis, and an app's control replies follow its own broker.
    return Celery("switchboard-up", broker=broker_url)


def _worker_answers(name: str, broker_url: str) -> bool:
    return bool(_pinger(broker_url).control.ping(destination=[name], timeout=0.5))


def _check_database() -> None:
    """Fail at once, naming it, when a database the user configured does not answer."""
    if not os.environ.get("DATABASE_URL"):
        return  # The SQLite default needs nothing running.
    try:
        connection.ensure_connection()
    except Exception as exc:  # noqa: BLE001 - every driver error means the same here.
        url = redis_service.redacted(os.environ["DATABASE_URL"])
        raise CommandError(
            f"the database at {url} (DATABASE_URL) is unreachable: {' '.join(str(exc).split())}"
        ) from None


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
            # What it needs first: anything missing or taken is reported before any work.
            exclusive.lock_var_dir(var_dir)
            exclusive.check_port("127.0.0.1", web_port, "web")
            exclusive.check_port(settings.GATEWAY_HOST, settings.GATEWAY_PORT, "gateway")
            exclusive.check_port("127.0.0.1", settings.RUNTIME_ADMIN_PORT, "runtime admin API")
            _check_database()
            # Deployed code must never run unsandboxed by accident (the deploy's import
            # check runs here, whichever backend runs the runners).
            sandbox.ensure_available()
            backend.ensure_cluster()
            env["REDIS_URL"] = self._redis(supervisor, var_dir)
            self.say("Preparing the database and static files...")
            call_command("migrate", interactive=False, verbosity=0)
            call_command("collectstatic", interactive=False, verbosity=0)
            user, password = accounts.ensure_admin(var_dir)
            token = accounts.ensure_token(user, var_dir)
            config_file = cli_config.config_path()
            cli_config.write_file(config_file, api_url, token)
            self._start_all(supervisor, var_dir, web_port)
            if seed_demo:
                self._seed_demo(api_url, token, var_dir)
            self._summary(web_url, api_url, password, var_dir, config_file, seed_demo)
            supervisor.supervise(self.say)
        except KeyboardInterrupt:
            self.say("\nStopping...")
        except (
            ChildFailed,
            demo.DemoError,
            redis_service.RedisUnavailable,
            exclusive.AlreadyInUse,
        ) as exc:
            failure = str(exc)
        except CommandError as exc:
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

    def _redis(self, supervisor: Supervisor, var_dir: Path) -> str:
        """The Redis every process will use: REDIS_URL, a running default, or our own."""
        if os.environ.get("REDIS_URL"):
            redis_service.check(os.environ["REDIS_URL"])
            return os.environ["REDIS_URL"]
        if redis_service.answers(settings.DEFAULT_REDIS_URL):
            return settings.DEFAULT_REDIS_URL
        embedded = redis_service.EmbeddedRedis(var_dir / "redis")
        child = Child(
            "redis",
            embedded.command(),
            var_dir / "logs" / "redis.log",
            embedded.answers,
            stop_last=True,
        )
        self.say(
            f"No Redis answers at {redis_service.redacted(settings.DEFAULT_REDIS_URL)}; "
            f"starting a private one on {embedded.socket}..."
        )
        supervisor.start(child)
        supervisor.wait_healthy(child, 10)
        return embedded.url

    def _start_all(self, supervisor: Supervisor, var_dir: Path, web_port: int) -> None:
        logs = var_dir / "logs"
        worker_name = f"switchboard-up-{os.getpid()}@{socket.gethostname()}"
        broker_url = supervisor.env.get("CELERY_BROKER_URL") or redis_service.celery_redis_url(
            supervisor.env["REDIS_URL"]
        )
        children = [
            Child(
                "web",
                web_command(web_port),
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
                worker_command(worker_name),
                logs / "worker.log",
                lambda: _worker_answers(worker_name, broker_url),
            ),
            Child(
                "beat",
                beat_command(var_dir / "celerybeat-schedule"),
                logs / "beat.log",
                lambda: True,  # It has nothing to answer; a beat that dies is restarted.
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
        if settings.BACKEND == "ray":
            lines.append(
                f"  Runners      Ray Serve replicas on the cluster at {settings.RAY_ADDRESS} "
                f"(Serve's proxy 127.0.0.1:{settings.RAY_SERVE_PORT})"
            )
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
