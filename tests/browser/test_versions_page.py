"""Clicking through the real dashboard: Chromium, live server, Celery worker, runtime."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Page, expect

from dashboard.api_client import ControlApi
from dashboard.cli import bundle
from dashboard.controlplane.models import App, Operation, Profile, Revision
from tests.browser.conftest import save_screenshot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.system, pytest.mark.django_db(transaction=True)]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PASSWORD = "correct horse battery staple"


def make_user(username: str, role: str):
    user = get_user_model().objects.create_user(username, password=PASSWORD)
    Profile.objects.create(user=user, role=role)
    return user


def app_source(tmp_path: Path, example: str, version: str) -> Path:
    folder = tmp_path / f"{example}-{version}"
    shutil.copytree(EXAMPLES / example, folder)
    app = folder / "app.py"
    app.write_text(re.sub(r"^VERSION = .*$", f"VERSION = {version!r}", app.read_text(), flags=re.M))
    return app


def deploy(
    api: ControlApi,
    tmp_path: Path,
    app: str,
    version: str,
    example: str = "demo",
    strategy: str = "recreate",  # Quick: no runner is started (setup() does not run).
) -> Revision:
    source = app_source(tmp_path, example, version)
    class_name = re.search(r"^class (\w+)\(App\)", source.read_text(), re.M).group(1)
    data, entrypoint = bundle.build(f"{source}::{class_name}")
    answer = api.deploy(app, data, entrypoint, message=f"release {version}", strategy=strategy)
    deadline = time.monotonic() + 60
    while not api.get_operation(answer["operation"]["id"])["finished_at"]:
        assert time.monotonic() < deadline, "deploy did not finish"
        time.sleep(0.1)
    return Revision.objects.get(pk=answer["revision"]["id"])


def row(page: Page, revision: Revision):
    return page.locator(f'[data-testid=revision-row][data-revision="{revision.short_id}"]')


def versions_url(system, app: str) -> str:
    return f"{system.api_url}/apps/{app}/versions"


def roll_back(page: Page, revision: Revision, strategy: str, *, screenshot: bool = False) -> None:
    row(page, revision).get_by_test_id("rollback-button").click()
    dialog = page.get_by_test_id("confirm-dialog")
    expect(dialog.get_by_test_id("rollback-target")).to_contain_text(revision.short_id)
    dialog.get_by_label(re.compile(strategy, re.I)).check()
    dialog.get_by_label("Reason").fill(f"browser test: {strategy}")
    if screenshot:
        save_screenshot(page, "rollback-dialog.png")
    dialog.get_by_test_id("confirm-button").click()


def test_a_deployer_rolls_back_with_each_strategy_and_sees_the_current_badge_move(
    system, api, people, page, tmp_path
):
    name = "shop-" + uuid.uuid4().hex[:6]
    first = deploy(api, tmp_path, name, "v1")
    second = deploy(api, tmp_path, name, "v2")
    third = deploy(api, tmp_path, name, "v3")
    sign_in(page, system.api_url, "deployer-user", PASSWORD)
    page.goto(versions_url(system, name))
    expect(row(page, third).get_by_test_id("current-badge")).to_be_visible()

    roll_back(page, first, "rolling", screenshot=True)
    expect(page.get_by_test_id("action-panel").first).to_have_attribute(
        "data-state", "succeeded", timeout=30_000
    )
    expect(row(page, first).get_by_test_id("current-badge")).to_be_visible()
    expect(row(page, third).get_by_test_id("current-badge")).to_have_count(0)

    roll_back(page, second, "recreate")
    expect(row(page, second).get_by_test_id("current-badge")).to_be_visible(timeout=10_000)
    expect(row(page, first).get_by_test_id("current-badge")).to_have_count(0)
    assert App.objects.get(name=name).current_revision_id == second.id


def test_an_admin_deletes_a_non_current_revision_but_cannot_delete_current(
    system, api, people, page, tmp_path
):
    name = "blog-" + uuid.uuid4().hex[:6]
    old = deploy(api, tmp_path, name, "v1")
    current = deploy(api, tmp_path, name, "v2")
    sign_in(page, system.api_url, "admin-user", PASSWORD)
    page.goto(versions_url(system, name))

    delete_current = row(page, current).get_by_test_id("delete-button")
    expect(delete_current).to_have_attribute("aria-disabled", "true")
    expect(delete_current).to_have_attribute("title", re.compile("Current"))

    row(page, old).get_by_test_id("delete-button").click()
    dialog = page.get_by_test_id("confirm-dialog")
    expect(dialog.get_by_test_id("delete-warning")).to_contain_text("cannot be undone")
    dialog.get_by_test_id("confirm-button").click()
    expect(row(page, old)).to_have_count(0, timeout=30_000)
    assert not Revision.objects.filter(pk=old.pk).exists()
    assert Revision.objects.filter(pk=current.pk).exists()


def test_an_admin_sees_every_status_and_only_the_actions_each_allows(
    system, api, people, page, tmp_path
):
    name = "store-" + uuid.uuid4().hex[:6]
    suspended = deploy(api, tmp_path, name, "v1")
    deployed = deploy(api, tmp_path, name, "v2")
    current = deploy(api, tmp_path, name, "v3")
    failed = deploy(api, tmp_path, name, "v4", example="broken_setup", strategy="rolling")
    api.suspend(name, str(suspended.id), reason="kept for the audit")
    # A setup() that takes a while keeps the newest revision Deploying while we look.
    source = app_source(tmp_path, "slow_setup", "v5")
    source.write_text(
        re.sub(r"^SETUP_SECONDS = .*$", "SETUP_SECONDS = 20.0", source.read_text(), flags=re.M)
    )
    data, entrypoint = bundle.build(f"{source}::SlowSetup")
    deploying = Revision.objects.get(
        pk=api.deploy(name, data, entrypoint, message="bigger model")["revision"]["id"]
    )
    sign_in(page, system.api_url, "admin-user", PASSWORD)
    page.goto(versions_url(system, name))

    for revision, status in (
        (deploying, "Deploying"),
        (failed, "Failed"),
        (current, "Deployed"),
        (deployed, "Deployed"),
        (suspended, "Suspended"),
    ):
        expect(row(page, revision).get_by_test_id("status-badge")).to_contain_text(status)
    expect(page.get_by_test_id("current-badge")).to_have_count(1)
    expect(row(page, current).get_by_test_id("current-badge")).to_contain_text("Current")
    save_screenshot(page, "versions.png", full_page=True)

    # Only a Deployed revision that is not Current can be rolled back to; each disabled
    # button says why.
    expect(row(page, deployed).get_by_test_id("rollback-button")).to_be_enabled()
    for revision, why in (
        (deploying, "is still Deploying"),
        (failed, "can never become Current"),
        (current, "is already Current"),
        (suspended, "resume it"),
    ):
        button = row(page, revision).get_by_test_id("rollback-button")
        expect(button).to_have_attribute("aria-disabled", "true")
        expect(button).to_have_attribute("title", re.compile(why))
    expect(row(page, suspended).get_by_test_id("resume-button")).to_be_visible()


def test_a_viewer_sees_no_action_buttons(system, api, people, page, tmp_path):
    name = "docs-" + uuid.uuid4().hex[:6]
    deploy(api, tmp_path, name, "v1")
    deploy(api, tmp_path, name, "v2")
    sign_in(page, system.api_url, "viewer-user", PASSWORD)
    page.goto(versions_url(system, name))
    expect(page.get_by_test_id("revision-row")).to_have_count(2)
    expect(
        page.get_by_role("button", name=re.compile("Rollback|Delete|Suspend|Rollout|Scale"))
    ).to_have_count(0)


def test_a_deployer_rolls_out_gracefully_and_watches_it_finish(system, api, people, page, tmp_path):
    name = "api-" + uuid.uuid4().hex[:6]
    deploy(api, tmp_path, name, "v1")
    sign_in(page, system.api_url, "deployer-user", PASSWORD)
    page.goto(versions_url(system, name))
    page.get_by_test_id("rollout-button").click()
    dialog = page.get_by_test_id("confirm-dialog")
    expect(dialog.get_by_test_id("force-warning")).to_contain_text("dropped")
    dialog.get_by_test_id("confirm-button").click()
    panel = page.get_by_test_id("action-panel").first
    expect(panel).to_have_attribute("data-state", "succeeded", timeout=30_000)
    expect(panel.get_by_test_id("op-steps")).not_to_be_empty()


def test_a_deploy_from_the_cli_shows_live_progress_until_deployed(
    system, api, people, page, tmp_path
):
    name = "live-" + uuid.uuid4().hex[:6]
    deploy(api, tmp_path, name, "v1")
    sign_in(page, system.api_url, "viewer-user", PASSWORD)
    page.goto(versions_url(system, name))
    expect(page.get_by_test_id("revision-row")).to_have_count(1)

    # A setup() of a few seconds keeps the rolling deploy in Deploying long enough to see.
    source = tmp_path / "slow"
    shutil.copytree(EXAMPLES / "slow_setup", source)
    (source / "app.py").write_text(
        re.sub(
            r"^SETUP_SECONDS = .*$",
            "SETUP_SECONDS = 4.0",
            (source / "app.py").read_text(),
            flags=re.M,
        )
    )
    cli = Path(sys.executable).parent / "switchboard"
    env = {**system.env, "SWITCHBOARD_URL": system.api_url, "SWITCHBOARD_TOKEN": api.token}
    deploy_cmd = subprocess.Popen(
        [
            str(cli),
            "deploy",
            f"{source / 'app.py'}::SlowSetup",
            "--app-name",
            name,
            "--message",
            "slow one",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    newest = page.get_by_test_id("revision-row").first
    expect(newest).to_have_attribute("data-status", "deploying", timeout=5_000)
    expect(newest).to_contain_text("slow one")
    expect(newest).to_have_attribute("data-status", "deployed", timeout=60_000)
    expect(newest.get_by_test_id("current-badge")).to_be_visible()
    assert deploy_cmd.wait(60) == 0, deploy_cmd.stdout.read()


def test_a_failed_deploy_shows_its_error(system, api, people, page, tmp_path):
    name = "oops-" + uuid.uuid4().hex[:6]
    good = deploy(api, tmp_path, name, "v1")
    sign_in(page, system.api_url, "viewer-user", PASSWORD)
    page.goto(versions_url(system, name))
    source = tmp_path / "broken"
    shutil.copytree(EXAMPLES / "broken_setup", source)
    class_name = re.search(r"^class (\w+)\(App\)", (source / "app.py").read_text(), re.M).group(1)
    data, entrypoint = bundle.build(f"{source / 'app.py'}::{class_name}")
    api.deploy(name, data, entrypoint, message="this one breaks")
    newest = page.get_by_test_id("revision-row").first
    expect(newest).to_have_attribute("data-status", "failed", timeout=60_000)
    expect(newest).to_contain_text("this one breaks")
    newest.get_by_text("Why it failed").click()
    expect(newest.get_by_test_id("revision-error")).to_contain_text(
        re.compile("Error|raise|setup", re.I)
    )
    expect(newest.get_by_test_id("revision-log")).to_be_visible()
    save_screenshot(page, "versions-failed.png", full_page=True)
    expect(row(page, good).get_by_test_id("current-badge")).to_be_visible()


# -- action panels, and a session that ends while a page is open -------------------------


def test_a_double_clicked_confirm_applies_once_and_shows_one_panel(
    system, api, people, page, tmp_path
):
    name = "dbl-" + uuid.uuid4().hex[:6]
    first = deploy(api, tmp_path, name, "v1")
    deploy(api, tmp_path, name, "v2")
    sign_in(page, system.api_url, "deployer-user", PASSWORD)
    page.goto(versions_url(system, name))
    row(page, first).get_by_test_id("rollback-button").click()
    dialog = page.get_by_test_id("confirm-dialog")
    dialog.get_by_label(re.compile("Recreate")).check()
    dialog.get_by_test_id("confirm-button").dblclick()
    expect(row(page, first).get_by_test_id("current-badge")).to_be_visible()
    panel = page.get_by_test_id("action-panel")
    expect(panel).to_have_count(1)
    expect(panel).to_have_attribute("data-state", "succeeded")
    expect(panel).to_contain_text(f"Roll back {first.short_id}")
    assert Operation.objects.filter(app__name=name, kind="set_rev").count() == 1


def test_a_new_action_clears_the_panels_of_finished_ones(system, api, people, page, tmp_path):
    name = "clr-" + uuid.uuid4().hex[:6]
    revisions = [deploy(api, tmp_path, name, v) for v in ("v1", "v2")]
    sign_in(page, system.api_url, "deployer-user", PASSWORD)
    page.goto(versions_url(system, name))
    for target in revisions:  # v1, then back to v2.
        row(page, target).get_by_test_id("rollback-button").click()
        dialog = page.get_by_test_id("confirm-dialog")
        dialog.get_by_label(re.compile("Recreate")).check()
        dialog.get_by_test_id("confirm-button").click()
        expect(row(page, target).get_by_test_id("current-badge")).to_be_visible()
        expect(page.get_by_test_id("action-panel")).to_have_attribute("data-state", "succeeded")
    expect(page.get_by_test_id("action-panel")).to_contain_text(revisions[1].short_id)


def test_signing_out_in_another_tab_sends_an_open_page_to_sign_in(
    system, api, people, page, tmp_path
):
    name = "out-" + uuid.uuid4().hex[:6]
    deploy(api, tmp_path, name, "v1")
    sign_in(page, system.api_url, "viewer-user", PASSWORD)
    page.goto(versions_url(system, name))
    other_tab = page.context.new_page()
    other_tab.goto(system.api_url + "/")
    other_tab.get_by_role("button", name="Sign out").click()
    other_tab.wait_for_url(re.compile("/login/"))
    # The Versions table's next poll finds the session gone: the whole page goes to the
    # sign-in form (and back to this page after), nothing is swapped into the table.
    expect(page).to_have_url(re.compile(rf"/login/\?next=%2Fapps%2F{name}%2Fversions$"))
    expect(page.get_by_label("Username")).to_have_count(1)
    page.get_by_label("Username").fill("viewer-user")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(versions_url(system, name))


def _set_tab_hidden(page, hidden: bool) -> None:
    # Headless Chromium's tab is always visible; this is what a switch of tabs looks like.
    page.evaluate(
        """(hidden) => {
            Object.defineProperty(document, "hidden", {value: hidden, configurable: true});
            Object.defineProperty(document, "visibilityState",
                {value: hidden ? "hidden" : "visible", configurable: true});
            document.dispatchEvent(new Event("visibilitychange"));
        }""",
        hidden,
    )


def test_a_hidden_tab_sends_no_polls_and_catches_up_when_shown(system, api, people, page, tmp_path):
    name = "tab-" + uuid.uuid4().hex[:6]
    deploy(api, tmp_path, name, "v1")
    sign_in(page, system.api_url, "viewer-user", PASSWORD)
    page.goto(versions_url(system, name))
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if r.headers.get("hx-request") else None)
    with page.expect_request(lambda r: r.headers.get("hx-request") == "true"):
        pass  # The table polls while the tab is visible.

    _set_tab_hidden(page, True)
    page.wait_for_timeout(500)  # A poll already on its way may still land.
    polls.clear()
    newer = deploy(api, tmp_path, name, "v2")
    page.wait_for_timeout(3_000)  # Three table intervals.
    assert polls == []

    # Shown again, the page refreshes at once instead of showing the stale table.
    _set_tab_hidden(page, False)
    expect(row(page, newer).get_by_test_id("current-badge")).to_be_visible()


def test_dialogs_work_from_the_keyboard_and_give_focus_back(system, api, people, page, tmp_path):
    name = "keys-" + uuid.uuid4().hex[:6]
    old = deploy(api, tmp_path, name, "v1")
    deploy(api, tmp_path, name, "v2")
    sign_in(page, system.api_url, "deployer-user", PASSWORD)
    page.goto(versions_url(system, name))
    rollback = row(page, old).get_by_test_id("rollback-button")
    rollback.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_test_id("confirm-dialog")
    expect(dialog).to_be_visible()

    def focus_in_dialog() -> bool:
        return page.evaluate(
            "document.getElementById('confirm-dialog').contains(document.activeElement)"
        )

    assert focus_in_dialog()
    for key in ["Tab"] * 12 + ["Shift+Tab"] * 12:  # More than the dialog has controls.
        page.keyboard.press(key)
        assert focus_in_dialog(), f"focus left the dialog after {key}"
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(rollback).to_be_focused()

    # The table refreshes behind an open dialog (someone scales the app from the CLI):
    # focus still goes back to the Rollback button of that row, now a new element.
    rollback.click()
    expect(dialog).to_be_visible()
    api.scale(name, {"keep_alive": 90})
    expect(page.get_by_test_id("versions-region")).to_contain_text("keep-alive 90s")
    page.keyboard.press("Escape")
    expect(row(page, old).get_by_test_id("rollback-button")).to_be_focused()
