"""Per-installation secrets, signed routing messages and a private var dir.

Each test attacks the way the issue found: a token signed with the public development
key, a process started with it, a forged message on the routing channel, files other
local users could read, and session keys in Redis key names.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client, override_settings

from dashboard.api_client import ControlApi
from dashboard.controlplane import events, runtime_client
from dashboard.controlplane.models import ApiToken, App, Operation, Profile, Revision, Role
from dashboard.controlplane.tokens import issue_dashboard_token
from dashboard.settings import DEVELOPMENT_SECRET_KEY
from dashboard.web.sessions import cache_key_of
from tests.conftest import ROOT, wait_until
from tests.controlplane.conftest import ApiClient, make_bundle

# The runtime fixtures, imported so this module can use them.
from tests.runtime.conftest import deploy_example, runtime, runtime_factory  # noqa: F401
from tests.web.factories import make_user

PRINT_KEY = "from django.conf import settings; print(settings.SECRET_KEY)"


def manage(var_dir: Path, *args: str, **env: str) -> subprocess.Popen:
    """`manage.py ARGS` as a fresh process of an installation in var_dir, on its SQLite."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SECRET_KEY", "DEBUG", "DATABASE_URL") and not k.startswith("SWITCHBOARD_")
    }
    return subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, "SWITCHBOARD_VAR_DIR": str(var_dir), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(var_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    proc = manage(var_dir, *args, **env)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def mode(path: Path) -> int:
    try:
        return stat.S_IMODE(path.lstat().st_mode)
    except FileNotFoundError:
        return 0  # Gone while we looked (a warm spare's folder): it grants nothing now.


# What runners read as their own sandbox uid, through bind mounts that never pass through
# the var dir (which stays 0700, so no other local user can reach these either).
SANDBOX_SHARED = ("bundles", "run")


def readable_by_others(root: Path) -> list[str]:
    """Everything under root (root included) that grants any access to group or others,
    but what the runner sandbox must read as another uid."""
    paths = [root, *root.rglob("*")]
    return [
        f"{p} {oct(mode(p))}"
        for p in paths
        if not p.is_symlink()
        and mode(p) & 0o077
        and (p == root or p.relative_to(root).parts[0] not in SANDBOX_SHARED)
    ]


# --- The signing key ---------------------------------------------------------------


@pytest.mark.django_db
def test_a_dashboard_token_signed_with_the_development_key_is_refused():
    assert settings.SECRET_KEY != DEVELOPMENT_SECRET_KEY
    admin = User.objects.create_user("root-wannabe")
    Profile.objects.create(user=admin, role=Role.ADMIN)
    app = App.objects.create(name="svc", auth_mode="private", settings={"keep_alive": 10})
    with override_settings(SECRET_KEY=DEVELOPMENT_SECRET_KEY):
        forged = issue_dashboard_token(admin)  # What anyone holding the public key can do.

    me = ApiClient(forged).get("me")
    scale = ApiClient(forged).post("apps/svc/scale", {"keep_alive": 99})

    for response in (me, scale):
        assert response.status_code == 401
        assert response.json()["error"]["message"] == "invalid or expired dashboard token"
    app.refresh_from_db()
    assert app.settings == {"keep_alive": 10}
    assert not Operation.objects.exists()
    # The same user's token signed with the installation's key is accepted.
    assert ApiClient(issue_dashboard_token(admin)).get("me").json()["role"] == "admin"


@pytest.mark.django_db
def test_rotating_the_key_ends_dashboard_tokens_and_keeps_api_tokens(settings):
    user = User.objects.create_user("rotated")
    Profile.objects.create(user=user, role=Role.DEPLOYER)
    _, api_token = ApiToken.issue(user, "laptop", Role.DEPLOYER)
    dashboard_token = issue_dashboard_token(user)
    old_secret = runtime_client.admin_secret()

    settings.SECRET_KEY = "a-new-installation-key-after-rotation"

    assert ApiClient(dashboard_token).get("me").status_code == 401
    assert ApiClient(api_token).get("me").json()["role"] == "deployer"
    assert runtime_client.admin_secret() != old_secret


def test_a_process_with_the_development_key_and_debug_off_refuses_to_start(tmp_path):
    refused = run(tmp_path / "var", "check", SECRET_KEY=DEVELOPMENT_SECRET_KEY)

    assert refused.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY is the public development key" in refused.stderr
    assert "Unset SECRET_KEY to use this installation's own key" in refused.stderr
    assert not (tmp_path / "var" / "secret-key").exists()
    # Development may still use it, when it says so.
    allowed = run(tmp_path / "var", "check", SECRET_KEY=DEVELOPMENT_SECRET_KEY, DEBUG="true")
    assert allowed.returncode == 0, allowed.stderr


def test_the_installation_key_is_made_private_on_first_start_and_reused_after(tmp_path):
    var_dir = tmp_path / "var"
    first = run(var_dir, "shell", "--no-imports", "-c", PRINT_KEY)
    assert first.returncode == 0, first.stderr
    key_file = var_dir / "secret-key"

    assert mode(key_file) == 0o600
    assert first.stdout.strip() == key_file.read_text().strip()
    assert len(first.stdout.strip()) >= 50
    assert first.stdout.strip() != DEVELOPMENT_SECRET_KEY
    again = run(var_dir, "shell", "--no-imports", "-c", PRINT_KEY)
    assert again.stdout == first.stdout
    # SECRET_KEY in the environment wins, and leaves the file as it was.
    chosen = run(
        var_dir, "shell", "--no-imports", "-c", PRINT_KEY, SECRET_KEY="an-operator-chosen-key"
    )
    assert chosen.stdout.strip() == "an-operator-chosen-key"
    assert key_file.read_text().strip() == first.stdout.strip()


def test_processes_starting_together_on_a_new_var_dir_agree_on_one_key(tmp_path):
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    procs = [manage(var_dir, "shell", "--no-imports", "-c", PRINT_KEY) for _ in range(4)]
    keys = {proc.communicate(timeout=120)[0].strip() for proc in procs}

    assert keys == {(var_dir / "secret-key").read_text().strip()}
    assert sorted(p.name for p in var_dir.iterdir() if "secret" in p.name) == ["secret-key"]


def test_an_existing_var_dir_and_key_file_are_made_private_on_start(tmp_path):
    var_dir = tmp_path / "var"
    var_dir.mkdir(mode=0o755)
    var_dir.chmod(0o755)
    (var_dir / "secret-key").write_text("a-key-restored-from-a-backup\n")
    (var_dir / "secret-key").chmod(0o644)

    started = run(var_dir, "shell", "--no-imports", "-c", PRINT_KEY)

    assert started.stdout.strip() == "a-key-restored-from-a-backup"
    assert mode(var_dir) == 0o700
    assert mode(var_dir / "secret-key") == 0o600


# --- Files ---------------------------------------------------------------------------


def test_a_fresh_installation_on_sqlite_writes_only_private_files(tmp_path):
    var_dir = tmp_path / "var"
    migrated = run(var_dir, "migrate", "--no-input")
    assert migrated.returncode == 0, migrated.stderr
    collected = run(var_dir, "collectstatic", "--no-input")
    assert collected.returncode == 0, collected.stderr

    assert (var_dir / "switchboard.sqlite3").exists()
    assert any((var_dir / "collected-static").iterdir())
    assert readable_by_others(var_dir) == []


@pytest.mark.system
@pytest.mark.django_db(transaction=True)
def test_after_a_deploy_nothing_under_the_var_dir_is_readable_by_other_users(system):
    user = User.objects.create_user("files")
    Profile.objects.create(user=user, role=Role.ADMIN)
    _, token = ApiToken.issue(user, "t", Role.ADMIN)
    api = ControlApi(system.api_url, token, source="cli")
    source = "from dashboard.sdk import App, endpoint\n\n\nclass Files(App):\n"
    source += '    @endpoint("/")\n    def hello(self, data: dict) -> dict:\n'
    source += '        return {"ok": True}\n'
    # Archive members carry mode 0644 (tarfile's default), as most bundles' files do.
    answer = api.deploy("files", make_bundle({"app.py": source}), "app.py::Files")
    done = wait_until(
        lambda: (op := api.get_operation(answer["operation"]["id"]))["finished_at"] and op,
        timeout=120,
        what="the deploy to finish",
    )
    assert done["state"] == "succeeded", done
    called = httpx.post(
        f"{system.gateway_url}/files/",
        json={},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert called.status_code == 200, called.text
    revision = Revision.objects.get(app__name="files")

    assert (revision.bundle_dir / "app.py").exists()
    assert any(p.suffix == ".log" and p != system.var_dir for p in system.var_dir.rglob("*"))
    assert readable_by_others(system.var_dir) == []


# --- Sessions in Redis ----------------------------------------------------------------


@pytest.mark.django_db
def test_session_keys_do_not_appear_in_redis_key_names_after_sign_in():
    make_user(Role.VIEWER, "alice")
    client = Client()
    assert (
        client.post("/login/", {"username": "alice", "password": "pw-secret-1"}).status_code == 302
    )
    session_key = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert client.get("/").status_code == 200  # Read back through the cache.

    names = [k.decode() for k in redis.Redis.from_url(settings.REDIS_URL).scan_iter(count=1000)]

    assert not [name for name in names if session_key in name]
    assert any(name.endswith(cache_key_of(session_key)) for name in names)


# --- Routing messages -----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_forged_routing_message_changes_nothing_in_the_gateway(runtime):  # noqa: F811
    owner = User.objects.create_user("owner")
    Profile.objects.create(user=owner, role=Role.DEPLOYER)
    _, token = ApiToken.issue(owner, "t", Role.DEPLOYER)
    owner_calls = {"Authorization": f"Bearer {token}"}
    app = App.objects.create(name="vault", auth_mode="private", owner=owner)
    v1 = deploy_example(app, "fast")
    v2 = deploy_example(app, "fast", current=False, replace={'"fast v1"': '"fast v2"'})

    def served() -> str:
        response = runtime.gateway("POST", "/vault/", json={}, headers=owner_calls)
        return response.json()["version"]

    assert served() == "fast v1"
    assert runtime.gateway("POST", "/vault/", json={}).status_code == 401

    # Forged: the app made public, at a generation far ahead of any real switch.
    app.auth_mode, app.current_revision, app.generation = "public", v1, 7
    forged = {"app": "vault", "state": events.app_state(app)}
    with override_settings(SECRET_KEY=DEVELOPMENT_SECRET_KEY):
        signed_with_public_key = events.signed(forged)
    channel = events.apps_channel()
    publisher = redis.Redis.from_url(settings.REDIS_URL)
    for message in (forged, {**forged, "sig": "0" * 64}, signed_with_public_key):
        publisher.publish(channel, json.dumps(message))

    # Then a real switch to v2 (generation 1, still private). Messages on one channel
    # arrive in order: once v2 is served the forged ones were heard. Had one of them been
    # applied, its generation 7 would have made the gateway ignore this switch.
    app.auth_mode, app.current_revision, app.generation = "private", v2, 1
    events.publish_app_changed("vault", events.app_state(app))
    wait_until(lambda: served() == "fast v2", what="the real switch to v2 to be routed by")

    refused = runtime.gateway("POST", "/vault/", json={})
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "missing_token"
    log = runtime.log()
    assert "ignoring an app-change message (unsigned)" in log
    assert log.count("ignoring an app-change message (bad signature)") == 2
    assert App.objects.get(name="vault").auth_mode == "private"
