"""A runner's states (DESIGN.md section 5) and the sets every layer decides by.

The runtime sets them, the control plane waits on them, the dashboard and the CLI show
them: all import them from here. Standard library only, so the CLI (which imports no
Django) and the dashboard (which does not import the runtime) may both use it.

PENDING → SETUP → IDLE ⇄ RUNNING → DRAINING → TERMINATING → TERMINATED; CRASH_BACKOFF when
a ready runner's process died (it is restarted); FAILED when setup() raised or exceeded
startup_timeout (not restarted: the revision is broken, not the process).
"""

from __future__ import annotations

from enum import StrEnum


class RunnerState(StrEnum):
    # Members equal their names, so a state read from JSON compares equal to its member.
    PENDING = "PENDING"
    SETUP = "SETUP"
    IDLE = "IDLE"
    RUNNING = "RUNNING"
    DRAINING = "DRAINING"
    TERMINATING = "TERMINATING"
    TERMINATED = "TERMINATED"
    CRASH_BACKOFF = "CRASH_BACKOFF"
    FAILED = "FAILED"


# Ready to take a request: warm (IDLE) or serving (RUNNING).
READY = frozenset({RunnerState.IDLE, RunnerState.RUNNING})
# Booting: its process is starting or its setup() runs.
STARTING = frozenset({RunnerState.PENDING, RunnerState.SETUP})
# Counts as one of its revision's runners: starting, ready, or crashed and about to restart.
# DRAINING and TERMINATING runners are on their way out and serve nothing new.
ACTIVE = STARTING | READY | {RunnerState.CRASH_BACKOFF}
# Ended: listed for a while as history, never coming back.
GONE = frozenset({RunnerState.TERMINATED, RunnerState.FAILED})
# What on-call reads as "failing": crash-looping, or its setup() failed.
FAILING = frozenset({RunnerState.CRASH_BACKOFF, RunnerState.FAILED})
# The order states are shown in: the healthy ones first.
DISPLAY_ORDER = (
    RunnerState.RUNNING,
    RunnerState.IDLE,
    RunnerState.SETUP,
    RunnerState.PENDING,
    RunnerState.DRAINING,
    RunnerState.TERMINATING,
    RunnerState.CRASH_BACKOFF,
    RunnerState.FAILED,
    RunnerState.TERMINATED,
)


def node_label(runner: dict) -> str | None:
    """Where a runner runs, as the CLI and the dashboard show it; None when its backend
    does not say (one machine). The node's address, then the start of its id: nodes on one
    machine share an address, and Ray's own tools (`ray status`) name nodes by that id."""
    node, node_id = runner.get("node"), runner.get("node_id")
    if not node:
        return None
    return f"{node} ({node_id[:8]})" if node_id else node
