"""A hypothesis state machine over the control API (DESIGN.md sections 3, 4 and 6).

Hypothesis chooses sequences of deploy (rolling or recreate, working or broken code,
with or without --reset-scale), set-rev (both strategies), rollout (graceful or force),
delete-rev, suspend, resume, scale and releasing the hold a rollback sets, plus the
refusals among them (Current, a Failed or a Suspended revision as a set-rev target,
deleting Current, suspending what is not Deployed, resuming what is not Suspended,
releasing an app that is not held, values out of range). Each request goes over real HTTP to the live control API and each accepted
operation is run by the real Celery worker against the real runtime and runner processes;
the machine waits for it to finish before the next step.

The machine keeps its own model of the app (the revisions and their statuses, Current,
the alias's settings, how many operations were recorded) and after every step compares
it with what the API shows, and checks the invariants:

- exactly one revision is Current, unless none was ever deployed successfully;
- Current exists, belongs to the app, and is Deployed (or Suspended by an operator);
  never Failed, Deploying or deleted;
- the alias's settings follow the parameter rules of section 3;
- a rollback holds the app: later deploys are Deployed but do not move the alias until
  the hold is released;
- every accepted mutation is one more operation in the history, finished with its outcome;
- a refused mutation answers a precise message and changes nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from django.conf import settings as django_settings
from hypothesis import HealthCheck, Phase, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from dashboard.controlplane.models import ApiToken, Profile
from tests.conftest import System, wait_until
from tests.controlplane.conftest import app_source, make_bundle
from tests.invariants.test_parameter_table import TABLE

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]

# DESIGN.md section 3's table as the tests keep it (the oracle is not the code under test).
DEFAULTS: dict[str, Any] = {name: row[1] for name, row in TABLE.items()}
CODE_SPECIFIC = tuple(name for name, row in TABLE.items() if row[0] == "code-specific")
TUNABLE = tuple(name for name in DEFAULTS if name not in CODE_SPECIFIC)
BROKEN_SOURCE = "raise RuntimeError('this code does not import')\n"


@st.composite
def code_settings(draw) -> dict[str, Any]:
    """Some of the parameters, as a revision's code declares them (the rest: defaults)."""
    ceiling = draw(st.integers(1, 4))
    chosen = {
        "keep_alive": draw(st.integers(30, 600)),
        "max_concurrency": ceiling,
        "min_concurrency": draw(st.integers(0, min(ceiling, 1))),
        "concurrency_buffer": draw(st.integers(0, ceiling)),
        "concurrency_buffer_perc": draw(st.integers(0, 100)),
        "scaling_delay": draw(st.integers(0, 3600)),
        "max_multiplexing": draw(st.integers(1, 4)),
        "startup_timeout": draw(st.integers(30, 120)),
        "machine_type": draw(st.sampled_from(sorted(django_settings.MACHINE_TYPES))),
    }
    names = draw(st.sets(st.sampled_from(sorted(chosen)), max_size=len(chosen)))
    declared = {name: chosen[name] for name in names}
    # What the code declares must be consistent on its own (its defaults fill the rest).
    full = {**DEFAULTS, **declared}
    if full["min_concurrency"] > full["max_concurrency"]:
        declared["min_concurrency"] = full["max_concurrency"]
    if full["concurrency_buffer"] > full["max_concurrency"]:
        declared["concurrency_buffer"] = full["max_concurrency"]
    return declared


@dataclass
class Model:
    """What the app must look like, kept by the machine from the answers it was given."""

    statuses: dict[str, str] = field(default_factory=dict)  # revision id -> status
    code: dict[str, dict] = field(default_factory=dict)  # revision id -> its code's values
    created: list[str] = field(default_factory=list)  # revision ids, oldest first
    current: str | None = None
    settings: dict[str, Any] | None = None  # the alias's settings
    operations: int = 0
    held: bool = False


class Api:
    """The control API over real HTTP, by URL and JSON only."""

    def __init__(self, base: str, token: str):
        self.http = httpx.Client(
            base_url=base + "/api/v1/",
            headers={"Authorization": f"Bearer {token}", "X-Switchboard-Source": "cli"},
            timeout=60,
        )

    def get(self, path: str, **params) -> httpx.Response:
        return self.http.get(path, params=params)

    def post(self, path: str, body: dict) -> httpx.Response:
        return self.http.post(path, json=body)

    def delete(self, path: str, body: dict | None = None) -> httpx.Response:
        return self.http.request("DELETE", path, json=body or {})

    def deploy(self, app: str, source: str, **fields) -> httpx.Response:
        return self.http.post(
            f"apps/{app}/revisions",
            data={"entrypoint": "app.py::Fast", "auth_mode": "public", **fields},
            files={"bundle": ("bundle.tar.gz", make_bundle({"app.py": source}))},
        )

    def finish(self, answer: httpx.Response) -> dict:
        assert answer.status_code in (200, 202), answer.text
        op_id = answer.json()["operation"]["id"]
        return wait_until(
            lambda: (op := self.get(f"operations/{op_id}").json())["finished_at"] and op,
            timeout=90,
            what=f"operation {op_id} to finish",
        )


class ControlApiMachine(RuleBasedStateMachine):
    # Set by the test before the machine runs.
    api: Api
    system: System

    def __init__(self) -> None:
        super().__init__()
        self.app = f"sm-{uuid.uuid4().hex[:10]}"
        self.model = Model()

    # -- helpers -------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything a refused mutation must leave as it was."""
        app = self.api.get(f"apps/{self.app}")
        if app.status_code == 404:
            return {"app": None}
        assert app.status_code == 200, app.text
        detail = app.json()
        revisions = self.api.get(f"apps/{self.app}/revisions", page_size=200).json()
        history = self.api.get(f"apps/{self.app}/operations", page_size=200).json()
        return {
            "current": (detail["current_revision"] or {}).get("id"),
            "settings": detail["settings"],
            "held": detail["held"],
            "revisions": {r["id"]: (r["status"], r["current"]) for r in revisions["revisions"]},
            "operations": [(o["id"], o["state"]) for o in history["operations"]],
        }

    def refused(self, answer: httpx.Response, status: int, *words: str, before: dict) -> None:
        assert answer.status_code == status, answer.text
        message = answer.json()["error"]["message"]
        for word in words:
            assert word in message, f"{word!r} not in {message!r}"
        assert self.snapshot() == before, "a refused mutation changed something"

    def recorded(self, op: dict, kind: str, state: str = "succeeded") -> None:
        note(f"{kind} {state}: operation {op['id']}")
        assert op["kind"] == kind and op["state"] == state, op
        assert op["app"] == self.app and op["requester"] and op["source"] == "cli"
        assert op["steps"], "an operation without its steps"
        self.model.operations += 1

    def short(self, rev: str) -> str:
        return rev[:8]

    def with_status(self, *statuses: str) -> list[str]:
        return [r for r in self.model.created if self.model.statuses.get(r) in statuses]

    def switch_settings(self, target: str) -> dict[str, Any]:
        """Set-rev: tunables stay on the alias, code-specific values from the target."""
        code = self.model.code[target]
        return {
            **{n: self.model.settings[n] for n in TUNABLE},
            **{n: code[n] for n in CODE_SPECIFIC},
        }

    # -- deploy --------------------------------------------------------------------------

    @initialize(first=code_settings(), second=code_settings())
    def two_deploys(self, first, second):
        """Every sequence starts from an app with two revisions, so set-rev has a target."""
        self.deploy("rolling", first, reset_scale=False, broken=False)
        self.deploy("recreate", second, reset_scale=False, broken=False)

    @rule(
        strategy=st.sampled_from(["rolling", "recreate"]),
        declared=code_settings(),
        reset_scale=st.booleans(),
        broken=st.sampled_from([False, False, True]),  # one deploy in three fails
    )
    def deploy(self, strategy, declared, reset_scale, broken):
        source = BROKEN_SOURCE if broken else app_source(**declared)
        answer = self.api.deploy(
            self.app, source, strategy=strategy, reset_scale=str(reset_scale).lower()
        )
        assert answer.status_code == 202, answer.text
        rev = answer.json()["revision"]["id"]
        op = self.api.finish(answer)
        m = self.model
        m.created.append(rev)
        code = {**DEFAULTS, **declared}
        m.code[rev] = code
        if broken:
            self.recorded(op, "deploy", "failed")
            m.statuses[rev] = "failed"
            failed = self.api.get(f"apps/{self.app}/revisions/{rev}").json()
            assert failed["error"], "a Failed revision without its error"
            return
        self.recorded(op, "deploy")
        m.statuses[rev] = "deployed"
        if m.held:
            return  # A held app gets a Deployed revision; the alias stays.
        if m.settings is None or reset_scale:
            m.settings = dict(code)
        else:
            inherited = {n: m.settings[n] for n in TUNABLE}
            ceiling = inherited["max_concurrency"]
            inherited["min_concurrency"] = min(inherited["min_concurrency"], ceiling)
            inherited["concurrency_buffer"] = min(inherited["concurrency_buffer"], ceiling)
            m.settings = {**inherited, **{n: code[n] for n in CODE_SPECIFIC}}
        m.current = rev

    # -- set-rev -------------------------------------------------------------------------

    @precondition(lambda self: self.model.current and self.with_status("deployed"))
    @rule(data=st.data(), strategy=st.sampled_from(["rolling", "recreate"]))
    def set_rev(self, data, strategy):
        m = self.model
        targets = [r for r in self.with_status("deployed") if r != m.current]
        if not targets:
            return
        target = data.draw(st.sampled_from(targets), label="target")
        answer = self.api.post(
            f"apps/{self.app}/set-rev", {"revision": self.short(target), "strategy": strategy}
        )
        op = self.api.finish(answer)
        self.recorded(op, "set_rev")
        # Older than Current: a rollback, which holds the app (hold_on_rollback is on).
        if m.created.index(target) < m.created.index(m.current):
            m.held = True
        m.settings = self.switch_settings(target)
        m.current = target

    # -- rollout -------------------------------------------------------------------------

    @precondition(lambda self: self.model.statuses.get(self.model.current) == "deployed")
    @rule(force=st.booleans())
    def rollout(self, force):
        op = self.api.finish(self.api.post(f"apps/{self.app}/rollout", {"force": force}))
        self.recorded(op, "rollout")

    # -- delete-rev ----------------------------------------------------------------------

    @precondition(lambda self: any(r != self.model.current for r in self.model.statuses))
    @rule(data=st.data())
    def delete_rev(self, data):
        m = self.model
        target = data.draw(
            st.sampled_from([r for r in m.created if r in m.statuses and r != m.current])
        )
        op = self.api.finish(self.api.delete(f"apps/{self.app}/revisions/{target}"))
        self.recorded(op, "delete_rev")
        del m.statuses[target]
        missing = self.api.get(f"apps/{self.app}/revisions/{target}")
        assert missing.status_code == 404, missing.text

    # -- suspend / resume ----------------------------------------------------------------

    @precondition(lambda self: self.with_status("deployed"))
    @rule(data=st.data())
    def suspend(self, data):
        target = data.draw(st.sampled_from(self.with_status("deployed")))
        answer = self.api.post(f"apps/{self.app}/suspend", {"revision": target})
        op = self.api.finish(answer)
        self.recorded(op, "suspend")
        self.model.statuses[target] = "suspended"
        if target == self.model.current:
            gone = httpx.get(f"{self.system.gateway_url}/{self.app}/", timeout=30)
            assert gone.status_code == 503 and "app suspended" in gone.text, gone.text

    @precondition(lambda self: self.with_status("suspended"))
    @rule(data=st.data())
    def resume(self, data):
        target = data.draw(st.sampled_from(self.with_status("suspended")))
        op = self.api.finish(self.api.post(f"apps/{self.app}/resume", {"revision": target}))
        self.recorded(op, "resume")
        self.model.statuses[target] = "deployed"

    # -- scale ---------------------------------------------------------------------------

    @precondition(lambda self: self.model.current)
    @rule(
        keep_alive=st.integers(0, 86400),
        request_timeout=st.integers(1, 86400),
        scaling_delay=st.integers(0, 3600),
        perc=st.integers(0, 100),
    )
    def scale(self, keep_alive, request_timeout, scaling_delay, perc):
        changes = {
            "keep_alive": keep_alive,
            "request_timeout": request_timeout,
            "scaling_delay": scaling_delay,
            "concurrency_buffer_perc": perc,
        }
        answer = self.api.post(f"apps/{self.app}/scale", changes)
        op = self.api.finish(answer)
        self.recorded(op, "scale")
        self.model.settings = {**self.model.settings, **changes}

    # -- the hold a rollback sets -------------------------------------------------------

    @precondition(lambda self: self.model.held)
    @rule()
    def release(self):
        op = self.api.finish(self.api.post(f"apps/{self.app}/release", {}))
        self.recorded(op, "release")
        self.model.held = False  # The next deploy becomes Current again.

    # -- refusals: a precise message, and nothing changed ----------------------------------

    def refusals(self) -> list[tuple[str, str, str, dict, int, str]]:
        """The refused mutations possible now: (what, method, path, body, status, words)."""
        m = self.model
        app = f"apps/{self.app}"
        found = []
        for rev in m.statuses:
            short, status = self.short(rev), m.statuses[rev]
            if status == "failed":
                why = "a Failed revision can never become Current"
            elif status == "suspended":
                why = "is Suspended; resume it before making it Current"
            elif rev == m.current:
                why = "is already Current"
            else:
                why = ""
            if why:
                found.append(("set-rev", "post", f"{app}/set-rev", {"revision": short}, 409, why))
            if status != "deployed":
                found.append(
                    (
                        "suspend",
                        "post",
                        f"{app}/suspend",
                        {"revision": rev},
                        409,
                        "only a Deployed revision can be suspended",
                    )
                )
            if status != "suspended":
                found.append(
                    (
                        "resume",
                        "post",
                        f"{app}/resume",
                        {"revision": rev},
                        409,
                        "only a Suspended revision can be resumed",
                    )
                )
        if m.current:
            found.append(
                (
                    "delete-rev",
                    "delete",
                    f"{app}/revisions/{m.current}",
                    {},
                    409,
                    f"revision {self.short(m.current)} is Current",
                )
            )
            for name in ("keep_alive", "max_concurrency", "scaling_delay", "request_timeout"):
                _, _, low, high = TABLE[name]
                for value in (low - 1, high + 1):
                    found.append(
                        (
                            "scale",
                            "post",
                            f"{app}/scale",
                            {name: value},
                            400,
                            f"{name}={value} is out of range; allowed: {low}–{high}",
                        )
                    )
        return found

    @precondition(lambda self: self.model.created)
    @rule(data=st.data())
    def a_refused_mutation_changes_nothing(self, data):
        refusals = self.refusals()
        if not refusals:
            return
        what, method, path, body, status, words = data.draw(st.sampled_from(refusals))
        note(f"refused {what}: {method.upper()} {path} {body}")
        before = self.snapshot()
        send = self.api.delete if method == "delete" else self.api.post
        self.refused(send(path, body), status, words, before=before)

    # -- the invariants, after every step ------------------------------------------------

    @invariant()
    def the_api_shows_the_model(self):
        m = self.model
        seen = self.snapshot()
        if "app" in seen:  # No deploy yet: nothing exists.
            assert not m.created, "the app vanished"
            return
        assert seen["current"] == m.current
        current_marks = [rev for rev, (_, current) in seen["revisions"].items() if current]
        assert current_marks == ([m.current] if m.current else []), "not exactly one Current"
        assert {rev: status for rev, (status, _) in seen["revisions"].items()} == m.statuses
        if m.current:
            # The alias points to an existing revision of this app that serves (or was
            # suspended by an operator): never Failed, Deploying or deleted.
            assert seen["revisions"][m.current][0] in ("deployed", "suspended")
            assert seen["settings"] == m.settings
        assert seen["held"] == m.held
        assert len(seen["operations"]) == m.operations, "a mutation missing from History"
        unfinished = [op for op in seen["operations"] if op[1] in ("queued", "running")]
        assert not unfinished, f"operations left running: {unfinished}"


@pytest.fixture
def machine_api(system: System, django_user_model) -> Api:
    user = django_user_model.objects.create_user("machine-admin")
    Profile.objects.create(user=user, role="admin")
    _, raw = ApiToken.issue(user, "state machine", "admin")
    return Api(system.api_url, raw)


def test_the_control_api_keeps_designs_invariants_through_any_sequence(system, machine_api):
    ControlApiMachine.api = machine_api
    ControlApiMachine.system = system
    # Bounded for `make test` (about a minute): each step is real work of the worker and
    # the runtime. No shrinking: it would replay whole sequences for minutes; a failure
    # reports its full sequence instead, each step with its operation (note()).
    run_state_machine_as_test(
        ControlApiMachine,
        settings=settings(
            max_examples=4,
            stateful_step_count=10,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            phases=[Phase.explicit, Phase.reuse, Phase.generate],
        ),
    )
