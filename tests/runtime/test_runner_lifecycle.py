"""Runner processes: start, serve, stop, logs, failures and crash backoff."""

from __future__ import annotations

import os
import signal

import pytest

from tests.conftest import wait_until
from tests.runtime.conftest import deploy_example

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_runner_starts_serves_stops_gracefully_and_keeps_its_log(runtime):
    revision = deploy_example("hello", "slow_endpoint")
    started = runtime.start_runner(revision)
    assert started["id"].startswith("r-") and started["app"] == "hello"

    ready = runtime.runner(started["id"], wait_for="ready", timeout=30)
    assert ready["state"] == "IDLE"
    assert ready["ready_at"] and ready["pid"]

    response = runtime.gateway("POST", "/hello/", json={"seconds": 0})
    assert response.json()["slept"] == 0
    assert response.headers["X-Switchboard-Runner"] == started["id"]

    stopping = runtime.admin("POST", f"/runners/{started['id']}/stop", json={})
    assert stopping.status_code == 200
    gone = runtime.runner(started["id"], wait_for="gone", timeout=30)
    assert gone["state"] == "TERMINATED"
    assert gone["ended_at"] >= gone["ready_at"]  # Its lifetime is known, and over.

    log = runtime.admin("GET", "/logs", params={"runner": started["id"]})
    assert log.headers["content-type"].startswith("text/plain")
    assert "setup() finished" in log.text
    assert "teardown: goodbye" in log.text
    assert "TERMINATING" in log.text
    by_revision = runtime.admin("GET", "/logs", params={"revision": str(revision.id)})
    assert f"[{started['id']}]" in by_revision.text


def test_starting_twice_with_one_key_starts_only_once(runtime):
    revision = deploy_example("keyed", "fast")
    body = {"count": 2, "key": "op-1:start", "settings": None}
    first = runtime.admin("POST", f"/revisions/{revision.id}/runners", json=body).json()
    again = runtime.admin("POST", f"/revisions/{revision.id}/runners", json=body).json()
    assert [r["id"] for r in first["runners"]] == [r["id"] for r in again["runners"]]
    assert len({r["id"] for r in runtime.runners("keyed")}) == 2


def test_setup_that_raises_fails_the_runner_and_its_log_says_why(runtime):
    revision = deploy_example("broken", "broken_setup")
    started = runtime.start_runner(revision)
    failed = runtime.runner(started["id"], wait_for="ready", timeout=30)
    assert failed["state"] == "FAILED"
    # One line for the revision's error; the traceback is in the runner's log.
    assert failed["error"] == "setup() raised RuntimeError: model file weights.bin is missing"
    log = runtime.admin("GET", "/logs", params={"runner": started["id"]}).text
    assert "Traceback (most recent call last)" in log
    assert "loading the model..." in log
    assert "RuntimeError: model file weights.bin is missing" in log


def test_setup_longer_than_startup_timeout_fails_the_runner(runtime):
    revision = deploy_example(
        "sleepy", "slow_setup", replace={"SETUP_SECONDS = 3.0": "SETUP_SECONDS = 60"}
    )
    started = runtime.start_runner(revision, startup_timeout=1)
    failed = runtime.runner(started["id"], wait_for="ready", timeout=30)
    assert failed["state"] == "FAILED"
    assert "startup_timeout=1s" in failed["error"]
    wait_until(lambda: not _alive(failed["pid"]), what="the timed-out runner to be killed")


def test_a_runner_killed_once_is_restarted_at_once_and_one_that_keeps_crashing_backs_off(
    runtime,
):
    revision = deploy_example("crashy", "fast")
    started = runtime.start_runner(revision)
    ready = runtime.runner(started["id"], wait_for="ready", timeout=30)

    os.kill(ready["pid"], signal.SIGKILL)
    restarted = wait_until(
        lambda: (
            (r := runtime.runner(started["id"]))["restarts"] == 1 and r["state"] == "IDLE" and r
        ),
        what="the killed runner to be restarted at once",
    )
    assert restarted["pid"] != ready["pid"]

    # Killed again before serving anything: now it is crash-looping and waits.
    os.kill(restarted["pid"], signal.SIGKILL)
    backing_off = runtime.wait_state(started["id"], "CRASH_BACKOFF")
    assert "restarting in 0.5s" in backing_off["error"]
    assert backing_off["crash_looping"] is True

    again = runtime.wait_state(started["id"], "IDLE")
    assert again["restarts"] == 2
    assert runtime.gateway("POST", "/crashy/", json={}).json()["version"] == "fast v1"
    log = runtime.admin("GET", "/logs", params={"runner": started["id"]}).text
    assert "crashed: process exited with code -9; restarting now" in log
    assert "crashed: process exited with code -9; restarting in 0.5s" in log


def test_a_revision_that_crashes_on_every_request_answers_503_at_once_while_it_loops(
    runtime_factory,
):
    # A long backoff, as in production: callers must not wait it out in the queue.
    runtime = runtime_factory(
        SWITCHBOARD_RUNNER_BACKOFF_STEP="60", SWITCHBOARD_RUNNER_BACKOFF_CAP="600"
    )
    deploy_example(
        "doomed",
        "fast",
        replace={'return {"version": VERSION, "echo": data}': '__import__("os")._exit(3)'},
    )
    first = runtime.gateway("POST", "/doomed/", json={})
    assert first.status_code == 502  # Its runner died under it.
    second = runtime.gateway("POST", "/doomed/", json={})  # The runner restarted at once.
    assert second.status_code == 502

    looping = wait_until(
        lambda: (r := runtime.gateway("POST", "/doomed/", json={})).status_code == 503 and r,
        what="the gateway to refuse at once while every runner is in backoff",
    )
    assert looping.json()["error"]["code"] == "revision_crash_looping"
    assert "crash-looping (last: process exited with code 3" in looping.json()["error"]["message"]
    assert 1 <= int(looping.headers["Retry-After"]) <= 60
    [runner] = [r for r in runtime.runners("doomed") if r["state"] == "CRASH_BACKOFF"]
    assert runner["crash_looping"] is True


def test_kill_ends_a_runner_at_once(runtime):
    revision = deploy_example("killme", "fast")
    started = runtime.start_runner(revision)
    ready = runtime.runner(started["id"], wait_for="ready", timeout=30)
    runtime.admin("POST", f"/runners/{started['id']}/kill", json={})
    assert runtime.runner(started["id"], wait_for="gone", timeout=10)["state"] == "TERMINATED"
    assert not _alive(ready["pid"])


def test_unknown_runners_and_revisions_are_404_and_the_admin_api_needs_its_secret(runtime):
    assert runtime.admin("GET", "/runners/r-00000000").status_code == 404
    missing = runtime.admin(
        "POST", "/revisions/00000000-0000-0000-0000-000000000000/runners", json={}
    )
    assert missing.status_code == 404
    assert "not found" in missing.json()["error"]["message"]
    assert runtime.admin("GET", "/logs", params={"runner": "r-00000000"}).status_code == 404
    import httpx

    refused = httpx.get(runtime.admin_url + "/runners")
    assert refused.status_code == 401
    assert "secret" in refused.json()["error"]["message"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes: it runs no code and holds no socket.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ")[1][0] != "Z"


def test_the_runner_listing_puts_live_runners_first_then_the_newest(runtime):
    # The order the dashboard's Runners page and `switchboard apps runners` show.
    failed = runtime.start_runner(deploy_example("listed-broken", "broken_setup"))
    runtime.runner(failed["id"], wait_for="ready", timeout=30)
    revision = deploy_example("listed", "fast")
    older = runtime.start_runner(revision)
    runtime.runner(older["id"], wait_for="ready", timeout=30)
    newer = runtime.start_runner(revision)
    runtime.runner(newer["id"], wait_for="ready", timeout=30)

    ours = {failed["id"], older["id"], newer["id"]}
    listed = [r["id"] for r in runtime.admin("GET", "/runners").json()["runners"]]
    assert [i for i in listed if i in ours] == [newer["id"], older["id"], failed["id"]]
