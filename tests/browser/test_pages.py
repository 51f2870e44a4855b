"""The Apps, History and Versions pages in Chromium: phone layout, the dialog's opening
scroll, and regions that refresh by themselves. Rows are made directly in the database
(committed, so the live server sees them); nothing here needs a deploy."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from dashboard.controlplane.models import OperationKind, Role
from tests.browser.conftest import sign_in
from tests.web.factories import make_app, make_operation, make_revision, make_user

pytestmark = [pytest.mark.browser, pytest.mark.system, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-secret-1"  # tests.web.factories.make_user's


@pytest.fixture
def deployer(system) -> str:
    return make_user(Role.DEPLOYER, "dee").username


@pytest.fixture
def demo(system):
    app = make_app("demo")
    old = make_revision(app, message="old but good", age=timedelta(hours=1))
    current = make_revision(app, message="the current one", current=True)
    make_operation(app, OperationKind.SET_REV, revision=current)
    return app, old


def overflows(page: Page, selector: str) -> bool:
    return page.locator(selector).first.evaluate("el => el.scrollWidth > el.clientWidth")


def test_on_a_phone_the_apps_page_shows_each_app_as_a_card_without_sideways_scrolling(
    system, deployer, demo, phone
):
    sign_in(phone, system.api_url, deployer, PASSWORD)
    phone.goto(system.api_url + "/")
    row = phone.locator('[data-app="demo"]')
    for label in ("App", "Current revision", "Status", "Runners (Current)", "Last operation"):
        cell = row.locator(f'td[data-label="{label}"]')
        expect(cell).to_be_in_viewport()
        box = cell.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, label
    assert not overflows(phone, ".table-container")
    assert not overflows(phone, "html")


def test_on_a_phone_the_rollback_dialog_opens_at_its_top(system, deployer, demo, phone):
    _app, old = demo
    sign_in(phone, system.api_url, deployer, PASSWORD)
    phone.goto(f"{system.api_url}/apps/demo/versions")
    phone.locator(f'[data-revision="{old.short_id}"]').get_by_test_id("rollback-button").click()
    dialog = phone.get_by_test_id("confirm-dialog")
    expect(dialog.get_by_test_id("rollback-target")).to_contain_text(old.short_id)
    for part in (
        "#dialog-title",
        "[data-testid=rollback-current]",
        "[data-testid=rollback-target]",
    ):
        expect(dialog.locator(part)).to_be_in_viewport()
    # Focus is still in the dialog, on its first control, for keyboard users.
    assert dialog.evaluate(
        "d => d.contains(document.activeElement) && d !== document.activeElement"
    )


def test_the_history_page_refreshes_by_itself_and_stays_on_the_page_shown(
    system, deployer, demo, page
):
    app, _old = demo
    now = timezone.now()
    # With the demo's own operation, 26: one on page 2.
    for i in range(25):
        make_operation(app, OperationKind.SCALE, reason=f"op {i}", created_at=now - timedelta(i))
    sign_in(page, system.api_url, deployer, PASSWORD)
    page.goto(f"{system.api_url}/apps/demo/history?page=2")
    rows = page.get_by_test_id("operation-row")
    expect(rows).to_have_count(1)

    make_operation(app, OperationKind.ROLLOUT, reason="newest")
    # The newest one goes on top of page 1, so page 2 now holds two, still on page 2.
    expect(rows).to_have_count(2)
    expect(page.locator("ul.pagination li.active")).to_have_text("2")


def test_the_apps_page_refreshes_by_itself(system, deployer, demo, page):
    app, _old = demo
    sign_in(page, system.api_url, deployer, PASSWORD)
    page.goto(system.api_url + "/")
    last_op = page.locator('[data-app="demo"] td[data-label="Last operation"]')
    expect(last_op).to_contain_text("set-rev")

    make_operation(app, OperationKind.ROLLOUT)
    expect(last_op).to_contain_text("rollout")
