"""The incident path from the CLI, against the real system: `apps cancel`, a rollback that
supersedes a slow deploy, `--expect-current`, and the hold a rollback sets (`apps release`,
`deploy --promote`, `apps hold-policy`)."""

from __future__ import annotations

import json
import shutil

import pytest

from dashboard.controlplane.models import App, Operation, Revision
from tests.cli.conftest import ROOT
from tests.conftest import wait_until
from tests.invariants.conftest import runners_of

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]


def endless_source(sb) -> str:
    """examples/slow_setup with a setup() longer than any test: it ends only if cancelled."""
    folder = sb.work / "endless"
    shutil.copytree(ROOT / "examples" / "slow_setup", folder)
    app_py = folder / "app.py"
    text = app_py.read_text()
    for old, new in (
        ("SETUP_SECONDS = 3.0", "SETUP_SECONDS = 3000.0"),
        ("startup_timeout = 60", "startup_timeout = 3600"),
    ):
        assert old in text, f"examples/slow_setup/app.py no longer contains {old!r}"
        text = text.replace(old, new)
    app_py.write_text(text)
    return f"{app_py}::SlowSetup"


def start_endless_deploy(sb, app: str) -> Operation:
    sb("deploy", endless_source(sb), "--app-name", app, "--no-wait")
    op = Operation.objects.filter(app__name=app, kind="deploy").order_by("-created_at").first()
    wait_until(
        lambda: any(r["state"] == "SETUP" for r in runners_of(str(op.revision_id))),
        timeout=60,
        what="the endless deploy's runner to be in setup()",
    )
    return op


def test_apps_cancel_stops_the_deploy_in_progress(sb):
    sb.deploy("stopper", "v1")
    op = start_endless_deploy(sb, "stopper")

    result = sb("apps", "cancel", "stopper", "--reason", "wrong build")

    assert f"cancelled deploy operation {op.id} of stopper" in result.stdout
    assert "cancelled: cancelled by ada: wrong build" in result.stdout  # the step, shown live
    op.refresh_from_db()
    assert (op.state, op.error) == ("cancelled", "cancelled: cancelled by ada: wrong build")
    assert Revision.objects.get(pk=op.revision_id).status == "failed"
    assert sb.served_version("stopper") == "v1"


def test_apps_cancel_with_nothing_in_progress_says_so_and_changes_nothing(sb):
    sb.deploy("idle", "v1")
    before = list(Operation.objects.values_list("id", "state", "cancel_requested_at"))

    result = sb("apps", "cancel", "idle", ok=False)

    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: no operation is in progress on idle; there is nothing to cancel"
    )
    assert list(Operation.objects.values_list("id", "state", "cancel_requested_at")) == before


def test_a_rollback_during_a_slow_deploy_goes_through_and_the_deploy_ends_cancelled(sb):
    sb.deploy("incident", "v1")
    sb.deploy("incident", "v2")
    _, v1 = sb.revisions("incident")
    op = start_endless_deploy(sb, "incident")

    result = sb("apps", "set-rev", "incident", v1["id"][:8], "--reason", "v2 errors")

    assert f"incident now serves revision {v1['id'][:8]}" in result.stdout
    assert sb.served_version("incident") == "v1"
    op = wait_until(
        lambda: (o := Operation.objects.get(pk=op.pk)).finished_at and o,
        what="the superseded deploy to end",
    )
    assert op.state == "cancelled"
    assert op.error == f"cancelled: superseded by ada's rollback to {v1['id'][:8]}"
    history = json.loads(sb("apps", "history", "incident", "--json").stdout)["operations"]
    assert [h["state"] for h in history if h["id"] == str(op.id)] == ["cancelled"]


def test_expect_current_refuses_a_stale_rollback_naming_who_changed_it(sb):
    sb.deploy("stale", "v1")
    sb.deploy("stale", "v2")
    v2, v1 = sb.revisions("stale")
    sb("apps", "set-rev", "stale", v1["id"][:8], "--strategy", "recreate", "--reason", "bad v2")

    result = sb(
        "apps",
        "set-rev",
        "stale",
        v1["id"][:8],
        "--expect-current",
        v2["id"][:8],
        ok=False,
    )

    assert result.returncode == 1
    assert f"Current of stale changed: you saw {v2['id'][:8]}, it is now {v1['id'][:8]}" in (
        result.stderr
    )
    assert "set by ada (set-rev operation" in result.stderr
    assert "nothing was changed" in result.stderr
    assert [r["current"] for r in sb.revisions("stale")] == [False, True]
    # The one it saw still being Current, it goes through.
    ok = sb("apps", "rollout", "stale", "--expect-current", v1["id"][:8])
    assert "rolled out stale" in ok.stdout


def test_after_a_rollback_deploys_are_held_until_released_or_promoted(sb):
    sb.deploy("holdme", "v1")
    sb.deploy("holdme", "v2")
    _, v1 = sb.revisions("holdme")
    sb("apps", "set-rev", "holdme", v1["id"][:8], "--strategy", "recreate", "--reason", "v2 bad")

    held = sb.deploy("holdme", "v3")

    assert "deployed; not made Current: holdme is held since" in held.stdout
    assert "by ada's rollback" in held.stdout
    assert "release it with `switchboard apps release holdme` or deploy with --promote" in (
        held.stdout
    )
    assert "is deployed and Current" not in held.stdout
    assert sb.served_version("holdme") == "v1"
    listing = sb("apps", "list-rev", "holdme").stdout.splitlines()
    assert "Current" in listing[3] and "v1" in listing[3]
    assert "Previous" in listing[2] and "v2" in listing[2]
    assert listing[-1].startswith("holdme is HELD since") and "(v2 bad)" in listing[-1]
    assert "HELD" in sb("apps", "list").stdout

    released = sb("apps", "release", "holdme")
    assert "released the hold on holdme" in released.stdout
    assert "is deployed and Current" in sb.deploy("holdme", "v4").stdout
    assert sb.served_version("holdme") == "v4"

    sb("apps", "set-rev", "holdme", v1["id"][:8], "--strategy", "recreate")
    promoted = sb.deploy("holdme", "v5", "--promote")
    assert "is deployed and Current" in promoted.stdout
    assert "promoted: the hold on holdme is released" in promoted.stdout
    assert sb.served_version("holdme") == "v5"


def test_hold_policy_off_lets_the_next_deploy_go_live_after_a_rollback(sb):
    sb.deploy("free", "v1")
    sb.deploy("free", "v2")
    _, v1 = sb.revisions("free")

    result = sb("apps", "hold-policy", "free", "--off", "--reason", "canary app")

    assert "hold on rollback is off for free" in result.stdout
    sb("apps", "set-rev", "free", v1["id"][:8], "--strategy", "recreate")
    assert "is deployed and Current" in sb.deploy("free", "v3").stdout
    assert App.objects.get(name="free").held is False
    missing = sb("apps", "hold-policy", "free", ok=False)
    assert missing.returncode == 2 and "Missing option '--on'" in missing.stderr
