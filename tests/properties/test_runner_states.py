"""The runner state sets (dashboard/runner_states.py): how they relate, as every layer relies on."""

from __future__ import annotations

import json

from dashboard.runner_states import (
    ACTIVE,
    DISPLAY_ORDER,
    FAILING,
    GONE,
    READY,
    STARTING,
    RunnerState,
)


def test_every_state_is_shown_exactly_once_in_the_display_order():
    assert sorted(DISPLAY_ORDER) == sorted(RunnerState)
    assert len(DISPLAY_ORDER) == len(set(DISPLAY_ORDER))


def test_a_gone_runner_is_never_active_and_a_ready_or_starting_one_always_is():
    assert not GONE & ACTIVE
    assert READY | STARTING <= ACTIVE
    assert not READY & STARTING
    # On their way out: serve nothing new, yet not ended either.
    leaving = {RunnerState.DRAINING, RunnerState.TERMINATING}
    assert not leaving & (ACTIVE | GONE)
    assert FAILING <= ACTIVE | GONE


def test_a_state_read_from_json_is_its_member():
    # The runtime sends states as JSON strings; the control plane, dashboard and CLI
    # compare those strings with the members and sets.
    for state in RunnerState:
        sent = json.loads(json.dumps({"state": state}))["state"]
        assert sent == state and RunnerState(sent) is state
        assert (sent in GONE) == (state in GONE)
