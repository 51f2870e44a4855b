"""Seeding the `demo` app through the real control API, as a user's CLI would.

Four deploys leave every badge on the Versions page at once: two older Deployed
revisions, a Failed one (its setup() raises) and a Deployed one that is Current.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dashboard.api_client import ApiError, ControlApi
from dashboard.cli import bundle

APP_NAME = "demo"
APP_CLASS_RE = re.compile(r"^class\s+(\w+)\s*\(\s*(?:[\w.]+\.)?App\s*\)", re.MULTILINE)
ENDPOINT_RE = re.compile(r"@endpoint\(\s*[\"'](/[^\"']*)[\"']")
VERSION_RE = re.compile(r"^VERSION\s*=\s*.*$", re.MULTILINE)


class DemoError(Exception):
    """Seeding could not finish; the message says which step went wrong."""


@dataclass(frozen=True)
class Step:
    version: str
    source: str  # a folder under examples/
    message: str
    should_fail: bool = False


PLAN = (
    Step("v1", "demo", "First version of the demo app"),
    Step("v2", "demo", "Second version: VERSION is now v2"),
    Step(
        "v3-broken",
        "broken_setup",
        "Load a model in setup() (it raises: weights.bin is missing)",
        should_fail=True,
    ),
    Step("v3", "demo", "Back to the working greeting, VERSION v3"),
)


def find_entry(folder: Path) -> tuple[Path, str]:
    """The file and App subclass a bundle folder deploys."""
    for path in sorted(folder.glob("*.py")):
        match = APP_CLASS_RE.search(path.read_text())
        if match:
            return path, match.group(1)
    raise DemoError(f"no App subclass in {folder}")


def first_endpoint(path: Path) -> str:
    """The first endpoint path the file declares, for the curl example."""
    match = ENDPOINT_RE.search(path.read_text())
    return match.group(1) if match else "/"


def prepare_source(examples: Path, step: Step, work_dir: Path) -> str:
    """Copy an example to work_dir/<version>/ with its VERSION set; return FILE.py::Class."""
    target = work_dir / step.version
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(
        examples / step.source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    path, class_name = find_entry(target)
    text = path.read_text()
    if VERSION_RE.search(text):
        path.write_text(VERSION_RE.sub(f'VERSION = "{step.version}"', text, count=1))
    else:
        (target / "VERSION").write_text(step.version + "\n")
    return f"{path}::{class_name}"


def deployed_versions(api: ControlApi) -> set[str]:
    """The plan's versions the demo app already has (its revisions carry a `demo` annotation)."""
    try:
        revisions = api.list_revisions(APP_NAME, page_size=200).get("revisions", [])
    except ApiError as exc:
        if exc.status == 404:
            return set()
        raise
    return {(r.get("annotations") or {}).get("demo") for r in revisions} - {None}


def wait_for_operation(api: ControlApi, payload: dict, timeout: float = 300.0) -> dict:
    op = payload.get("operation", payload)
    deadline = time.monotonic() + timeout
    while not (op.get("finished_at") or op.get("state") in ("succeeded", "failed")):
        if time.monotonic() > deadline:
            raise DemoError(f"operation {op.get('id')} did not finish within {timeout:.0f}s")
        time.sleep(0.3)
        op = api.get_operation(op["id"])
        op = op.get("operation", op)
    return op


def seed(api: ControlApi, examples: Path, work_dir: Path, say: Callable[[str], None]) -> bool:
    """Deploy the plan's missing steps, once per installation; True if it deployed any.

    A marker file makes a finished seeding final (revisions the user deleted later stay
    deleted); without it, a seeding interrupted half-way resumes where it stopped.
    """
    marker = work_dir / "seeded"
    if marker.exists():
        say(f"the {APP_NAME!r} app was seeded before: leaving it as it is")
        return False
    work_dir.mkdir(parents=True, exist_ok=True)
    present = deployed_versions(api)
    deployed_any = False
    for step in PLAN:
        if step.version in present:
            say(f"{APP_NAME} {step.version} is already there")
            continue
        target = prepare_source(examples, step, work_dir)
        data, entrypoint = bundle.build(target)
        say(f"deploying {APP_NAME} {step.version}: {step.message}")
        payload = api.deploy(
            APP_NAME,
            data,
            entrypoint,
            message=step.message,
            annotations={"demo": step.version},
            auth_mode="public",
        )
        op = wait_for_operation(api, payload)
        failed = op.get("state") == "failed"
        if failed and not step.should_fail:
            raise DemoError(f"deploying {step.version} failed: {op.get('error')}")
        if not failed and step.should_fail:
            raise DemoError(f"{step.version} was meant to fail but deployed")
        say(f"  -> {'Failed, as intended' if failed else 'Deployed'}")
        deployed_any = True
    marker.write_text("The demo app was seeded; delete this file to seed missing steps again.\n")
    return deployed_any
