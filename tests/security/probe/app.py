"""A hostile app: each endpoint call tries every escape from the runner sandbox it is told
about and answers with what it reached (an empty list when the sandbox held).

The test tells it the host's paths, ports and pids (they are no secret to an attacker
who can guess); the probe reports what of them it could read, reach, signal or write.
With IMPORT_PROBE set in the bundle's probe_config.json, importing the module runs the
same probe and raises with its findings, which is how the import check is attacked.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from dashboard.sdk import App, endpoint

# The documented sandbox environment (dashboard/runtime/sandbox.py ENVIRONMENT).
ALLOWED_ENV = {
    "PATH",
    "HOME",
    "TMPDIR",
    "LANG",
    "PYTHONPATH",
    "PYTHONUNBUFFERED",
    "PYTHONDONTWRITEBYTECODE",
    "MALLOC_ARENA_MAX",
    "LC_CTYPE",  # Python sets it itself from LANG (PEP 538).
    "PWD",  # bwrap sets it to the folder it starts in, /app.
}


def _can_read(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            f.read(1)
        return True
    except OSError:
        return False


def _can_list(path: str) -> bool:
    try:
        os.listdir(path)
        return True
    except OSError:
        return False


def _can_connect(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _can_signal(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # Signal 0: the permission and existence check of a real kill.
        return True
    except OSError:
        return False


def _can_write(folder: str) -> bool:
    path = os.path.join(folder, f"probe-{os.getpid()}")
    try:
        with open(path, "w") as f:
            f.write("escaped")
        os.unlink(path)
        return True
    except OSError:
        return False


def probe(targets: dict) -> list[str]:
    reached: list[str] = []
    extra = sorted(set(os.environ) - ALLOWED_ENV)
    if extra:
        reached.append(f"environment {extra}")
    for path in targets.get("read", []):
        if _can_read(path):
            reached.append(f"read {path}")
    for path in targets.get("list", []):
        if _can_list(path):
            reached.append(f"list {path}")
    for port in targets.get("ports", []):
        if _can_connect(port):
            reached.append(f"connect 127.0.0.1:{port}")
    for host, port in targets.get("tcp", []):  # [host, port] pairs, IPv4 or IPv6.
        if _can_connect(port, host):
            reached.append(f"connect {host}:{port}")
    for pid in targets.get("pids", []):
        if _can_signal(pid):
            reached.append(f"signal {pid}")
    for folder in targets.get("write", []):
        if _can_write(folder):
            reached.append(f"write {folder}")
    try:
        import dashboard.settings as stolen  # noqa: F401

        reached.append(f"import dashboard.settings (SECRET_KEY {stolen.SECRET_KEY[:4]}...)")
    except Exception:  # noqa: BLE001 - any failure to import is the sandbox holding.
        pass
    try:
        import django  # noqa: F401 - the venv is visible; its settings are not.
        from django.conf import settings

        os.environ["DJANGO_SETTINGS_MODULE"] = "dashboard.settings"
        reached.append(f"django settings SECRET_KEY {settings.SECRET_KEY[:4]}...")
    except Exception:  # noqa: BLE001
        pass
    finally:
        # Its own doing, not the sandbox's: a later probe in this process must not see it.
        os.environ.pop("DJANGO_SETTINGS_MODULE", None)
    return reached


def _scratch_works() -> bool:
    return _can_write(os.environ.get("TMPDIR", "/tmp"))


config = Path(__file__).with_name("probe_config.json")
if config.exists():
    # Only the import-check variant ships this file: probe at import, report by raising.
    raise RuntimeError("reached " + json.dumps(probe(json.loads(config.read_text()))))


class Probe(App):
    @endpoint("/escape")
    def escape(self, data: dict) -> dict:
        return {
            "reached": probe(data),
            "scratch_works": _scratch_works(),
            "uid": os.getuid(),
            "processes": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        }

    @endpoint("/connect")
    def connect(self, data: dict) -> dict:
        """What of `tcp` ([host, port] pairs) accepts a connection, and what the echo server
        at `echo` sends back (test_network.py: an app with outbound network)."""
        echoed = None
        if data.get("echo"):
            try:
                with socket.create_connection(tuple(data["echo"]), timeout=10) as conn:
                    conn.sendall(b"ping from the sandbox\n")
                    echoed = conn.makefile("rb").readline().decode()
            except OSError as exc:
                echoed = f"failed: {exc}"
        return {"reached": probe({"tcp": data.get("tcp", [])}), "echo": echoed}
