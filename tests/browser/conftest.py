"""Playwright driving Debian's Chromium against the live system (see tests/conftest.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

# The dashboard served by granian, as `manage.py up` does: the live-update tests need it.
from tests.web.conftest import web_server  # noqa: F401

# Playwright's sync API runs an event loop in the test thread; the ORM calls the tests
# make between browser steps are still plain synchronous calls in that same thread.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Screenshots go to an ignored folder, so `make test` leaves the tree clean; `make
# screenshots` runs the tests that take them and copies the README's into docs/screenshots/.
SCREENSHOTS = Path(
    os.environ.get("SWITCHBOARD_SCREENSHOTS_DIR")
    or Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
).resolve()


# Module scope, not session: Playwright's sync API keeps an event loop running in this
# thread while it is started, and later tests that call asyncio.run() must not find one.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            "Debian's chromium is not installed: apt-get install -y chromium (.ci/run does)"
        )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _page(browser: Browser, width: int, height: int) -> Iterator[Page]:
    context = browser.new_context(
        viewport={"width": width, "height": height}, timezone_id="Europe/Berlin"
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"console errors in the browser: {errors}"


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    yield from _page(browser, 1280, 900)


@pytest.fixture
def phone(browser: Browser) -> Iterator[Page]:
    """A page the width of a phone (390 px), where tables become cards."""
    yield from _page(browser, 390, 844)


def save_screenshot(page: Page, name: str, *, full_page: bool = False) -> None:
    """Saves the page as SCREENSHOTS/name (Playwright creates the folder if missing)."""
    page.screenshot(path=SCREENSHOTS / name, full_page=full_page)


def sign_in(page: Page, base_url: str, username: str, password: str) -> None:
    page.goto(base_url + "/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/login" not in url)


@pytest.fixture
def people():
    """A viewer, a deployer and an admin, signed in with PASSWORD as ROLE-user."""
    from tests.browser.test_versions_page import make_user

    return {role: make_user(f"{role}-user", role) for role in ("viewer", "deployer", "admin")}


@pytest.fixture
def api(system, people):
    """The control API as admin-user, as the CLI calls it."""
    from dashboard.api_client import ControlApi
    from dashboard.controlplane.models import ApiToken

    _, token = ApiToken.issue(people["admin"], "browser tests", "admin")
    return ControlApi(system.api_url, token, source="cli", timeout=60)
