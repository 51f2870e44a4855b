"""The runner sandbox, attacked from inside: a probe app deployed by a deployer through the
real system (control API, Celery worker, runtime) tries every escape of DESIGN.md section 6
invariant 6 and reports what it reached. It must reach nothing, at runtime and during the
deploy's import check, while a normal app beside it keeps working."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from django.contrib.auth import get_user_model

from dashboard.controlplane.models import ApiToken, Profile, Revision, Role
from dashboard.runtime import sandbox, sandboxed

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / ".venv" / "bin" / "switchboard"
PROBE = Path(__file__).resolve().parent / "probe"

pytestmark = [
    pytest.mark.system,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not sandbox.enabled(), reason="SWITCHBOARD_SANDBOX=none"),
]


@pytest.fixture
def deployer_env(system, tmp_path) -> dict[str, str]:
    user = get_user_model().objects.create_user("mallory")
    Profile.objects.create(user=user, role=Role.DEPLOYER)
    _, raw = ApiToken.issue(user, "probe", Role.DEPLOYER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.update(
        {
            "SWITCHBOARD_URL": system.api_url,
            "SWITCHBOARD_TOKEN": raw,
            "XDG_CONFIG_HOME": str(tmp_path / "no-config"),
        }
    )
    return env


def deploy(env: dict[str, str], folder: Path, app: str, class_name: str, *, ok: bool = True):
    result = subprocess.run(
        [str(CLI), "deploy", f"{folder / 'app.py'}::{class_name}", "--app-name", app]
        + ["--auth", "public"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    if ok:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def targets(system, pids: list[int]) -> dict:
    """Everything of the control plane a deployed app must not reach."""
    # What `manage.py up` keeps in the var dir, as it keeps it: private to the service user.
    for name, content in (
        ("admin-token", "sbd_secret"),
        ("admin-password", "hunter2"),
        ("switchboard.sqlite3", "SQLite format 3"),
    ):
        (system.var_dir / name).write_text(content)
        (system.var_dir / name).chmod(0o600)
    files = [str(p) for p in system.var_dir.rglob("*") if p.is_file()]
    ports = [6379, 5432] + [
        urlsplit(url).port for url in (system.runtime_url, system.gateway_url, system.api_url)
    ]
    return {
        "read": files
        + [
            str(ROOT / "dashboard" / "settings.py"),
            str(ROOT / "dashboard" / "runtime" / "gateway.py"),
        ]
        + ["/etc/shadow", "/root/.bash_history", f"/proc/{os.getpid()}/environ"],
        # Folders of which nothing at all is shown (of the project, only the SDK and the
        # runner module are, with the venv).
        "list": [
            str(system.var_dir),
            str(system.var_dir / "bundles"),
            str(system.var_dir / "logs"),
            str(ROOT / "dashboard" / "controlplane"),
            str(ROOT / "dashboard" / "web"),
            str(ROOT / ".git"),
            "/root/.ssh",
            "/home",
        ],
        "ports": ports,
        "pids": pids,
        "write": ["/", "/app", "/usr", str(system.var_dir), str(ROOT), sys.prefix],
    }


def test_a_deployed_app_reaches_nothing_of_the_control_plane(system, deployer_env):
    # A normal app beside it: its runner is one the probe tries to signal.
    deploy(deployer_env, ROOT / "examples" / "fast", "victim", "Fast")
    assert httpx.post(f"{system.gateway_url}/victim/", json={}, timeout=60).status_code == 200
    deploy(deployer_env, PROBE, "probe", "Probe")

    runners = httpx.get(
        f"{system.api_url}/api/v1/apps/victim/runners",
        headers={"Authorization": f"Bearer {deployer_env['SWITCHBOARD_TOKEN']}"},
        timeout=30,
    ).json()["runners"]
    victim_pids = [r["pid"] for r in runners if r["pid"]]
    assert victim_pids
    pids = victim_pids + [system.runtime.pid, system.worker.pid, os.getpid()]

    response = httpx.post(
        f"{system.gateway_url}/probe/escape", json=targets(system, pids), timeout=120
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["reached"] == []
    assert report["scratch_works"]  # Its private /tmp is writable...
    assert report["uid"] >= sandboxed.UID_BASE  # ...as a uid of its own, not root...
    # ...in a PID namespace of its own: bwrap's init and the app are all it sees.
    assert report["processes"] == [1, 2]

    # The normal app still works, and its runner is the same process.
    assert httpx.post(f"{system.gateway_url}/victim/", json={}, timeout=60).status_code == 200
    for pid in victim_pids:
        os.kill(pid, 0)


def test_the_import_check_reaches_nothing_and_reports_only_a_bounded_error(
    system, deployer_env, tmp_path
):
    folder = tmp_path / "probe"
    shutil.copytree(PROBE, folder)
    (folder / "probe_config.json").write_text(
        json.dumps(targets(system, [system.runtime.pid, system.worker.pid, os.getpid()]))
    )
    result = deploy(deployer_env, folder, "probeimport", "Probe", ok=False)
    assert result.returncode != 0

    revision = Revision.objects.get(app__name="probeimport")
    assert revision.status == "failed"
    assert revision.error == "import check failed: RuntimeError: reached []"


def test_a_huge_import_error_comes_back_bounded(system, deployer_env, tmp_path):
    folder = tmp_path / "loud"
    folder.mkdir()
    (folder / "app.py").write_text(
        "from dashboard.sdk import App\n"
        "raise ValueError('x' * 100_000)\n"
        "class Loud(App):\n    pass\n"
    )
    deploy(deployer_env, folder, "loud", "Loud", ok=False)

    revision = Revision.objects.get(app__name="loud")
    assert revision.status == "failed"
    assert revision.error.startswith("import check failed: ValueError: xxx")
    assert len(revision.error) <= len("import check failed: ") + 500
    assert len(revision.log_tail) <= 2000


@pytest.mark.parametrize("command", ["runtime", "up"])
def test_without_bubblewrap_the_runtime_and_up_refuse_to_start_and_say_how_to_install_it(
    command, tmp_path
):
    env = {
        **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},  # SQLite in var.
        "SWITCHBOARD_SANDBOX_BWRAP": str(tmp_path / "no-bwrap"),
        "SWITCHBOARD_VAR_DIR": str(tmp_path / "var"),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "apt-get install bubblewrap" in result.stderr
    assert "SWITCHBOARD_SANDBOX=none" in result.stderr
    # It refused before doing anything: `up` never began to prepare the database.
    assert "Preparing the database" not in result.stdout
