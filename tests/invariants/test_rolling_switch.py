"""Invariant 3 and the strategies of DESIGN section 4, watched from outside while they run.

A watcher thread samples, in this order and over and over: the alias in the database
(App.current_revision), the runtime's runners, and the gateway's answer. Because a
target runner, once healthy, stays healthy (long keep_alive, one runner), "the alias
points to the target" in one sample must be backed by a healthy target runner in the
runtime snapshot taken just after it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import httpx
import pytest
from django.db import connection
from django.utils.dateparse import parse_datetime

from dashboard import runner_states
from dashboard.controlplane import runtime_client
from dashboard.controlplane.models import App
from tests.conftest import wait_until
from tests.controlplane.conftest import make_bundle
from tests.invariants.conftest import (
    ENTRYPOINT,
    deploy,
    finish,
    runners_of,
    served_version,
    slow_bundle,
    slow_setup_source,
)

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]

READY = runner_states.READY


@dataclass
class Sample:
    alias: str | None
    runners: list[dict]
    answer: str  # the version the gateway served, or the failure


@dataclass
class Watcher:
    """Samples alias, runners and gateway until stopped (an `with` block)."""

    system: object
    app: str
    samples: list[Sample] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        try:
            with httpx.Client(timeout=60) as http:
                while not self.stop.is_set():
                    alias = App.objects.filter(name=self.app).values_list(
                        "current_revision_id", flat=True
                    )[0]
                    runners = runtime_client.list_runners(app=self.app)
                    try:
                        response = http.get(f"{self.system.gateway_url}/{self.app}/")
                        answer = (
                            response.json()["version"]
                            if response.status_code == 200
                            else f"HTTP {response.status_code} {response.text[:100]}"
                        )
                    except httpx.HTTPError as exc:
                        answer = repr(exc)
                    self.samples.append(Sample(alias and str(alias), runners, answer))
        finally:
            connection.close()  # This thread's own database connection.

    def __enter__(self) -> Watcher:
        self.thread = threading.Thread(target=self.run)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(60)


def ready_runners(sample: Sample, revision: str) -> list[dict]:
    return [r for r in sample.runners if r["revision"] == revision and r["state"] in READY]


def step_time(op: dict, text: str):
    return parse_datetime(next(s["at"] for s in op["steps"] if text in s["message"]))


def assert_switch_was_rolling(watch: Watcher, op: dict, old: str, new: str, before: str, after):
    """The alias moved once, only after a target runner was healthy; the gateway kept
    serving the old version until then, then the new one, and never failed."""
    assert op["state"] == "succeeded", op["error"]
    aliases = [s.alias for s in watch.samples]
    assert aliases[0] == old and aliases[-1] == new, aliases
    first_new = aliases.index(new)
    assert set(aliases[first_new:]) == {new}, "the alias moved back"
    assert first_new > 0, "the watcher saw no moment before the switch"
    for sample in watch.samples[first_new:]:
        assert ready_runners(sample, new), f"alias on {new} without a healthy runner: {sample}"
    # The moment the alias moved came after the runner's health check passed.
    moved = step_time(op, " now points to ")
    ready_at = min(parse_datetime(r["ready_at"]) for r in ready_runners(watch.samples[-1], new))
    assert ready_at <= moved
    answers = [s.answer for s in watch.samples]
    assert set(answers) <= {before, after}, [a for a in answers if a not in (before, after)]
    assert answers[0] == before and answers[-1] == after
    flip = answers.index(after)
    assert set(answers[flip:]) == {after}, "the gateway went back to the old version"


def test_rolling_deploy_and_set_rev_move_the_alias_only_after_the_target_is_healthy(system, api):
    _, v1 = deploy(api, "inv-rolling", slow_bundle(3.0, "v1"))
    assert served_version(system, "inv-rolling") == "v1"

    with Watcher(system, "inv-rolling") as watch:
        answer = api.deploy("inv-rolling", slow_bundle(3.0, "v2"), ENTRYPOINT)
        v2 = answer["revision"]["id"]
        op = finish(api, answer["operation"]["id"])
    assert_switch_was_rolling(watch, op, v1["id"], v2, "v1", "v2")
    # Then the old revision's runners are drained.
    wait_until(
        lambda: not any(r["state"] in runner_states.ACTIVE for r in runners_of(v1["id"])),
        what="v1's runners to drain after the switch",
    )

    with Watcher(system, "inv-rolling") as watch:
        answer = api.set_rev("inv-rolling", v1["id"], strategy="rolling", reason="rollback")
        op = finish(api, answer["operation"]["id"])
    assert_switch_was_rolling(watch, op, v2, v1["id"], "v2", "v1")
    wait_until(
        lambda: not any(r["state"] in runner_states.ACTIVE for r in runners_of(v2)),
        what="v2's runners to drain after the rollback",
    )


def test_recreate_set_rev_switches_at_once_and_the_next_request_cold_starts_the_target(system, api):
    _, v1 = deploy(api, "inv-recreate", slow_bundle(0.5, "v1"))
    _, v2 = deploy(api, "inv-recreate", slow_bundle(0.5, "v2"))
    wait_until(
        lambda: not any(r["state"] in runner_states.ACTIVE for r in runners_of(v1["id"])),
        what="v1's runners to be gone",
    )
    assert served_version(system, "inv-recreate") == "v2"

    op = api.set_rev("inv-recreate", v1["id"], strategy="recreate")["operation"]
    assert op["state"] == "succeeded"
    assert str(App.objects.get(name="inv-recreate").current_revision_id) == v1["id"]
    # No runner of the target was started proactively...
    assert not [r for r in runners_of(v1["id"]) if r["state"] in runner_states.ACTIVE]
    # ...the next request starts one (and waits for it rather than failing)...
    assert served_version(system, "inv-recreate") == "v1"
    assert [r for r in runners_of(v1["id"]) if r["state"] in READY]
    # ...and the old revision's runners drain.
    wait_until(
        lambda: not any(r["state"] in runner_states.ACTIVE for r in runners_of(v2["id"])),
        what="v2's runners to drain",
    )


def test_a_recreate_deploy_switches_after_the_import_check_without_starting_a_runner(system, api):
    _, v1 = deploy(api, "inv-recreate-deploy", slow_bundle(0.5, "v1"))
    op, v2 = deploy(api, "inv-recreate-deploy", slow_bundle(0.5, "v2"), strategy="recreate")
    assert op["state"] == "succeeded", op["error"]
    messages = [s["message"] for s in op["steps"]]
    assert not any("started runner" in m for m in messages), messages
    passed = next(i for i, m in enumerate(messages) if "import check passed" in m)
    moved = next(i for i, m in enumerate(messages) if " now points to " in m)
    assert passed < moved
    assert not runners_of(v2["id"])
    assert served_version(system, "inv-recreate-deploy") == "v2"


def test_a_rolling_set_rev_whose_target_fails_setup_leaves_the_alias_and_says_why(system, api):
    # The target's setup() raises once a flag file is in its bundle: a revision that was
    # healthy when deployed and is broken now (a missing model file, say).
    source_line = "    def setup(self) -> None:\n"
    broken = source_line + (
        "        import pathlib\n"
        "        if (pathlib.Path(__file__).parent / 'broken.flag').exists():\n"
        "            raise RuntimeError('model weights are gone')\n"
    )
    source = slow_setup_source(0.2, "v1")
    assert source_line in source
    _, v1 = deploy(
        api, "inv-target-fails", make_bundle({"app.py": source.replace(source_line, broken)})
    )
    _, v2 = deploy(api, "inv-target-fails", slow_bundle(0.2, "v2"))
    (system.var_dir / "bundles" / v1["id"] / "broken.flag").write_text("")

    answer = api.set_rev("inv-target-fails", v1["id"], strategy="rolling")
    op = finish(api, answer["operation"]["id"])
    assert op["state"] == "failed"
    assert "model weights are gone" in op["error"] and "alias unchanged" in op["error"]
    assert str(App.objects.get(name="inv-target-fails").current_revision_id) == v2["id"]
    assert served_version(system, "inv-target-fails") == "v2"


def test_a_rolling_deploy_whose_setup_outlasts_startup_timeout_fails_and_keeps_the_alias(
    system, api
):
    _, v1 = deploy(api, "inv-timeout", slow_bundle(0.2, "v1"))
    op, v2 = deploy(api, "inv-timeout", slow_bundle(30.0, "v2", startup_timeout=2))
    assert op["state"] == "failed"
    revision = api.get_revision("inv-timeout", v2["id"])
    assert revision["status"] == "failed"
    assert "startup_timeout" in revision["error"] or "timed out" in revision["error"], revision
    assert str(App.objects.get(name="inv-timeout").current_revision_id) == v1["id"]
    assert served_version(system, "inv-timeout") == "v1"
