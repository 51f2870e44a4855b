"""Rules of DESIGN sections 3 and 4 that the other suites check only in-process or only at
the runtime's level, here end to end: the parameters a started runner really gets, scale
reaching the runtime at once, delete-rev stopping runners, runner stop and kill.
"""

from __future__ import annotations

import pytest

from dashboard import runner_states
from dashboard.controlplane import runtime_client
from dashboard.controlplane.models import App, Revision
from tests.conftest import wait_until
from tests.invariants.conftest import deploy, finish, runners_of, slow_bundle

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]

READY = runner_states.READY


def ready_of(revision_id: str) -> list[dict]:
    return [r for r in runners_of(revision_id) if r["state"] in READY]


def test_parameters_follow_the_rules_through_deploy_scale_and_a_rolling_set_rev(system, api):
    # First deploy: the code's values.
    _, v1 = deploy(api, "inv-params", slow_bundle(0.1, "v1", machine_type="S", max_multiplexing=2))
    assert api.get_app("inv-params")["settings"]["keep_alive"] == 300
    # Scale: a runtime-tunable changes on the alias at once.
    api.scale("inv-params", {"keep_alive": 123})
    # Deploy: code-specific values from the new code, runtime-tunables from the alias.
    op, v2 = deploy(api, "inv-params", slow_bundle(0.1, "v2", machine_type="M", max_multiplexing=3))
    assert op["state"] == "succeeded", op["error"]
    (runner,) = ready_of(v2["id"])
    assert runner["machine_type"] == "M"  # the runner the rolling deploy started
    settings = api.get_app("inv-params")["settings"]
    assert (settings["keep_alive"], settings["machine_type"], settings["max_multiplexing"]) == (
        123,
        "M",
        3,
    )

    # Rolling set-rev: tunables stay on the alias, code-specific values from the target,
    # and the runner started on the target already runs with them.
    op = finish(api, api.set_rev("inv-params", v1["id"], strategy="rolling")["operation"]["id"])
    assert op["state"] == "succeeded", op["error"]
    (runner,) = ready_of(v1["id"])
    assert runner["machine_type"] == "S"
    settings = api.get_app("inv-params")["settings"]
    assert (settings["keep_alive"], settings["machine_type"], settings["max_multiplexing"]) == (
        123,
        "S",
        2,
    )
    # Every revision keeps the settings it was deployed with (what list-rev shows).
    listed = {r["id"]: r["settings"] for r in api.list_revisions("inv-params")["revisions"]}
    assert listed[v1["id"]]["keep_alive"] == 300 and listed[v1["id"]]["machine_type"] == "S"
    assert listed[v2["id"]]["keep_alive"] == 123 and listed[v2["id"]]["machine_type"] == "M"


def test_scale_reaches_the_runtime_at_once(system, api):
    _, v1 = deploy(api, "inv-scale", slow_bundle(0.1, "v1"), strategy="recreate")
    assert not ready_of(v1["id"])
    answer = api.scale("inv-scale", {"min_concurrency": 2})
    assert answer["operation"]["state"] == "succeeded"
    # No request was sent: the runtime warms two runners because the alias says so.
    wait_until(lambda: len(ready_of(v1["id"])) == 2, what="two warm runners after the scale")


def test_delete_rev_stops_the_revisions_runners_removes_its_bundle_and_records_who(system, api):
    _, v1 = deploy(api, "inv-delete", slow_bundle(0.1, "v1"))
    _, v2 = deploy(api, "inv-delete", slow_bundle(0.1, "v2"))
    # A runner of the old revision still up (as one left by an unfinished switch would be).
    (runner,) = runtime_client.start_runners(v1["id"], 1, key="inv-delete-old")
    wait_until(lambda: ready_of(v1["id"]), what="a runner of the old revision to be ready")

    op = finish(api, api.delete_revision("inv-delete", v1["id"], reason="old")["operation"]["id"])
    assert op["state"] == "succeeded", op["error"]
    assert runtime_client.wait_runner(runner["id"], until="gone")["state"] == "TERMINATED"
    assert not Revision.objects.filter(pk=v1["id"]).exists()
    assert not (system.var_dir / "bundles" / v1["id"]).exists()
    assert (op["requester"], op["reason"], op["params"]["revision"]) == (
        "inv-admin",
        "old",
        v1["id"],
    )
    assert str(App.objects.get(name="inv-delete").current_revision_id) == v2["id"]


def test_runner_stop_with_replace_starts_a_replacement_first_and_kill_ends_one_at_once(system, api):
    _, v1 = deploy(api, "inv-runner", slow_bundle(0.1, "v1"))
    (old,) = ready_of(v1["id"])

    op = finish(api, api.stop_runner(old["id"], replace=True, reason="leak")["operation"]["id"])
    assert op["state"] == "succeeded", op["error"]
    assert op["kind"] == "runner_stop" and op["result"]["state"] == "TERMINATED"
    (replacement,) = ready_of(v1["id"])
    assert replacement["id"] != old["id"]
    gone = runtime_client.wait_runner(old["id"], until="gone")
    assert gone["state"] == "TERMINATED"

    op = finish(api, api.kill_runner(replacement["id"])["operation"]["id"])
    assert op["state"] == "succeeded", op["error"]
    assert op["kind"] == "runner_kill" and op["result"]["state"] == "TERMINATED"
