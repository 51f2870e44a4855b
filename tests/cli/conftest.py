"""The CLI as a user runs it: a real `.venv/bin/switchboard` process against the real system,
configured only by SWITCHBOARD_URL and SWITCHBOARD_TOKEN."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from django.contrib.auth import get_user_model

from dashboard.controlplane.models import ApiToken, Profile, Role

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / ".venv" / "bin" / "switchboard"
PROGRESS_LINE = re.compile(r"^\d\d:\d\d:\d\d  \S", re.MULTILINE)
ACCEPTED_LINE = re.compile(r"(?P<kind>[a-z-]+) accepted: operation [0-9a-f-]{36} \(\w+\)")


class Switchboard:
    def __init__(self, env: dict[str, str], gateway_url: str, work: Path):
        self.env = env
        self.gateway_url = gateway_url
        self.work = work

    def __call__(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(CLI), *args], env=self.env, capture_output=True, text=True, timeout=180
        )
        if ok:
            assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
        return result

    def source(self, version: str, example: str = "demo") -> str:
        """A copy of an example with its VERSION set, as FILE.py::Class."""
        folder = self.work / f"{example}-{version}"
        shutil.copytree(ROOT / "examples" / example, folder)
        app_py = folder / "app.py"
        app_py.write_text(
            re.sub(r'^VERSION = ".*"$', f'VERSION = "{version}"', app_py.read_text(), flags=re.M)
        )
        class_name = re.search(r"^class (\w+)\(App\)", app_py.read_text(), re.M).group(1)
        return f"{app_py}::{class_name}"

    def deploy(self, app: str, version: str, *extra: str) -> subprocess.CompletedProcess:
        return self(
            "deploy",
            self.source(version),
            "--app-name",
            app,
            "--auth",
            "public",
            "-m",
            version,
            *extra,
        )

    def revisions(self, app: str) -> list[dict]:
        return json.loads(self("apps", "list-rev", app, "--json").stdout)["revisions"]

    def deploy_refusal(self, app: str) -> dict:
        """What the API itself answers this token's deploy to `app` (an empty one)."""
        response = httpx.post(
            f"{self.env['SWITCHBOARD_URL']}/api/v1/apps/{app}/revisions",
            headers={"Authorization": f"Bearer {self.env['SWITCHBOARD_TOKEN']}"},
            timeout=30,
        )
        assert response.status_code in (400, 403), response.text
        return response.json()["error"]

    def served_version(self, app: str) -> str:
        response = httpx.get(f"{self.gateway_url}/{app}/version", timeout=60)
        assert response.status_code == 200, response.text
        return response.json()["version"]


@pytest.fixture
def sb(system, tmp_path) -> Switchboard:
    user = get_user_model().objects.create_user("ada")
    Profile.objects.create(user=user, role=Role.ADMIN)
    _, raw = ApiToken.issue(user, "cli tests", Role.ADMIN)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.update(
        {
            "SWITCHBOARD_URL": system.api_url,
            "SWITCHBOARD_TOKEN": raw,
            # An empty config home: the environment alone must be enough.
            "XDG_CONFIG_HOME": str(tmp_path / "no-config"),
        }
    )
    return Switchboard(env, system.gateway_url, tmp_path)


@pytest.fixture
def viewer(sb) -> Switchboard:
    user = get_user_model().objects.create_user("vic")
    Profile.objects.create(user=user, role=Role.VIEWER)
    _, raw = ApiToken.issue(user, "on-call", Role.VIEWER)
    return Switchboard({**sb.env, "SWITCHBOARD_TOKEN": raw}, sb.gateway_url, sb.work)
