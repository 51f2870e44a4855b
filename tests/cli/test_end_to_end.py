"""The CLI as a user runs it: a real `.venv/bin/switchboard` process against the real system
(control API, Celery worker, runtime and runner processes), configured only by
SWITCHBOARD_URL and SWITCHBOARD_TOKEN."""

from __future__ import annotations

import json

import httpx
import pytest

from dashboard import runner_states
from tests.cli.conftest import ACCEPTED_LINE, PROGRESS_LINE
from tests.conftest import wait_until

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]


def runners(sb, app: str) -> list[dict]:
    return json.loads(sb("apps", "runners", app, "--json").stdout)["runners"]


def test_deploy_shows_timestamped_progress_and_ends_deployed_and_current(sb):
    result = sb.deploy("hello", "v1", "--annotation", "ticket=OPS-1")

    assert len(PROGRESS_LINE.findall(result.stdout)) >= 3
    assert "is deployed and Current" in result.stdout
    [revision] = sb.revisions("hello")
    assert (revision["status"], revision["current"]) == ("deployed", True)
    assert revision["annotations"] == {"ticket": "OPS-1"}
    assert sb.served_version("hello") == "v1"


def test_list_rev_shows_each_revision_with_status_current_marker_and_settings(sb):
    sb.deploy("listed", "v1")
    sb.deploy("listed", "v2")

    table = sb("apps", "list-rev", "listed").stdout
    newest, older = sb.revisions("listed")

    header, first, second = table.splitlines()
    for column in ("ID", "STATUS", "CURRENT", "CREATED", "MESSAGE", "DEPLOYED BY", "MACHINE"):
        assert column in header
    for column in ("KEEP_ALIVE", "MIN/MAX", "BUFFER", "DELAY", "REQ_TIMEOUT", "MUX", "STARTUP"):
        assert column in header
    assert first.startswith(newest["id"][:8]) and "Current" in first and "v2" in first
    assert second.startswith(older["id"][:8]) and "Current" not in second
    assert "UTC" in first and "ada" in first and "XS" in first
    assert newest["current"] and not older["current"]
    for key in ("id", "status", "current", "created_at", "message", "machine_type"):
        assert key in newest
    assert len(newest["id"]) == 36


def test_set_rev_moves_the_alias_with_each_strategy_and_the_gateway_follows(sb):
    sb.deploy("switch", "v1")
    sb.deploy("switch", "v2")
    v2, v1 = sb.revisions("switch")

    rolling = sb("apps", "set-rev", "switch", v1["id"][:8], "--reason", "bad release")
    assert PROGRESS_LINE.search(rolling.stdout)
    assert sb.served_version("switch") == "v1"

    sb("apps", "set-rev", "switch", v2["id"], "--strategy", "recreate")
    assert sb.served_version("switch") == "v2"
    assert [r["current"] for r in sb.revisions("switch")] == [True, False]


def test_rollout_restarts_the_runners_gracefully_or_by_force(sb):
    sb.deploy("restart", "v1")

    graceful = sb("apps", "rollout", "restart")
    forced = sb("apps", "rollout", "restart", "--force")

    assert "rolled out restart (graceful)" in graceful.stdout
    assert "rolled out restart (force)" in forced.stdout
    assert sb.served_version("restart") == "v1"
    history = json.loads(sb("apps", "history", "restart", "--json").stdout)["operations"]
    assert [op["kind"] for op in history[:2]] == ["rollout", "rollout"]
    assert all(op["source"] == "cli" for op in history)


def test_delete_rev_removes_an_old_revision(sb):
    sb.deploy("tidy", "v1")
    sb.deploy("tidy", "v2")
    _, old = sb.revisions("tidy")

    sb("apps", "delete-rev", "tidy", old["id"][:8])

    assert [r["message"] for r in sb.revisions("tidy")] == ["v2"]


def test_delete_rev_of_the_current_revision_is_refused_with_one_line_and_changes_nothing(sb):
    sb.deploy("keep", "v1")
    [current] = sb.revisions("keep")

    result = sb("apps", "delete-rev", "keep", current["id"], ok=False)

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "current" in lines[0].lower()
    assert sb.revisions("keep") == [current]


def test_a_failed_deploy_exits_non_zero_with_the_reason_and_leaves_the_alias(sb):
    sb.deploy("fragile", "v1")
    broken = sb.source("x", example="broken_setup")

    result = sb("deploy", broken, "--app-name", "fragile", ok=False)

    assert result.returncode == 1
    assert "deploy failed:" in result.stderr
    assert "weights.bin is missing" in result.stderr
    statuses = [(r["status"], r["current"]) for r in sb.revisions("fragile")]
    assert statuses == [("failed", False), ("deployed", True)]
    # Its runners (Ray: its replicas) are listed FAILED, with why.
    failed = sb.revisions("fragile")[0]["id"]

    def failed_runners():
        runners = json.loads(sb("apps", "runners", "fragile", "--json").stdout)["runners"]
        mine = [r for r in runners if r["revision"] == failed]
        return mine if mine and all(r["state"] == "FAILED" for r in mine) else None

    rows = wait_until(failed_runners, timeout=30, interval=0.3, what="the runners listed FAILED")
    assert all("weights.bin is missing" in r["error"] for r in rows), rows


def test_no_wait_returns_once_the_deploy_is_accepted(sb):
    result = sb("deploy", sb.source("v1"), "--app-name", "later", "--no-wait", "--json")

    operation = json.loads(result.stdout)["operation"]
    assert operation["kind"] == "deploy"
    wait_until(
        lambda: sb.revisions("later")[0]["status"] == "deployed",
        timeout=120,
        what="the accepted deploy to finish",
    )


def test_scale_of_a_code_specific_value_says_the_next_deploy_resets_it(sb):
    sb.deploy("tuned", "v1")

    result = sb("apps", "scale", "tuned", "--max-multiplexing", "3", "--keep-alive", "30")
    later = sb("apps", "scale", "tuned", "--startup-timeout", "90", "--no-wait")

    # Said once, among the operation's steps; without waiting, as a note.
    reset = "is code-specific: the next deploy or set-rev resets it"
    assert result.stdout.count(reset) == 1
    assert f"max_multiplexing {reset}" in result.stdout
    assert "scaled tuned: keep_alive=30, max_multiplexing=3" in result.stdout
    assert f"note: startup_timeout {reset}" in later.stdout


def test_scale_out_of_range_is_refused_with_the_allowed_range(sb):
    sb.deploy("bounded", "v1")

    result = sb("apps", "scale", "bounded", "--keep-alive", "999999", ok=False)

    assert result.returncode == 1
    assert "0–86400" in result.stderr


def test_runners_logs_and_apps_list_show_the_live_system(sb):
    sb.deploy("watched", "v1")
    sb.served_version("watched")

    runners = json.loads(sb("apps", "runners", "watched", "--json").stdout)["runners"]
    table = sb("apps", "runners", "watched").stdout
    apps = sb("apps", "list").stdout
    logs = sb("logs", "watched", "--runner", runners[0]["id"]).stdout

    assert runners and runners[0]["id"] in table
    assert "watched" in apps and "serving" in apps
    assert logs.strip()


def test_logs_of_an_app_no_runner_has_written_to_say_so(sb):
    sb.deploy("quiet", "v1", "--strategy", "recreate")  # No runner is started.

    result = sb("logs", "quiet")
    assert result.stdout == ""
    assert "no logs yet: no runner of quiet has written any" in result.stderr


def test_one_apps_logs_do_not_show_another_apps_runner(sb):
    sb.deploy("alpha", "v1")
    sb.served_version("alpha")
    sb.deploy("beta", "v2")
    runner = json.loads(sb("apps", "runners", "alpha", "--json").stdout)["runners"][0]["id"]

    result = sb("logs", "beta", "--runner", runner, ok=False)
    assert result.returncode == 1
    assert f"app 'beta' has no runner '{runner}'" in result.stderr
    assert sb("logs", "alpha", "--runner", runner).stdout.strip()


def test_a_bad_app_name_is_refused_before_upload_with_the_apis_own_message(sb):
    result = sb("deploy", sb.source("v1"), "--app-name", "Bad Name!", ok=False)

    assert result.returncode == 2
    assert "uploading" not in result.stdout
    assert sb.deploy_refusal("Bad Name!")["message"] in result.stderr


def test_a_viewer_token_is_refused_before_upload_with_the_apis_own_message(sb, viewer):
    result = viewer("deploy", viewer.source("v1"), "--app-name", "peek", ok=False)

    assert result.returncode == 1
    assert "uploading" not in result.stdout
    refusal = viewer.deploy_refusal("peek")
    assert refusal["code"] == "forbidden"
    assert result.stderr.strip() == f"error: {refusal['message']}"
    assert json.loads(sb("apps", "list", "--json").stdout)["apps"] == []


def test_no_wait_prints_only_that_each_operation_was_accepted(sb):
    sb.deploy("eager", "v1")

    deployed = sb.deploy("eager", "v2", "--no-wait")
    wait_until(
        lambda: (
            json.loads(sb("apps", "history", "eager", "--json").stdout)["operations"][0]["state"]
            == "succeeded"
        ),
        timeout=120,
        what="the accepted deploy to finish",
    )
    _, v1 = sb.revisions("eager")
    switched = sb("apps", "set-rev", "eager", v1["id"], "--strategy", "recreate", "--no-wait")
    scaled = sb("apps", "scale", "eager", "--keep-alive", "30", "--no-wait")

    # Quick operations finish within the request, yet print no steps either.
    for result, kind in ((deployed, "deploy"), (switched, "set-rev"), (scaled, "scale")):
        assert ACCEPTED_LINE.fullmatch(result.stdout.strip())["kind"] == kind


def test_suspend_makes_the_gateway_refuse_and_stops_the_runners_resume_serves_again(sb):
    sb.deploy("paused", "v1")
    assert sb.served_version("paused") == "v1"

    sb("apps", "suspend", "paused", "--reason", "incident")

    answer = httpx.get(f"{sb.gateway_url}/paused/version", timeout=30)
    assert answer.status_code == 503 and "suspended" in answer.text
    wait_until(
        lambda: not [r for r in runners(sb, "paused") if r["state"] not in runner_states.GONE],
        timeout=120,
        what="every runner of the suspended revision stopped",
    )
    assert [r["status"] for r in sb.revisions("paused")] == ["suspended"]

    sb("apps", "resume", "paused")
    assert sb.served_version("paused") == "v1"
    assert [r["status"] for r in sb.revisions("paused")] == ["deployed"]
