"""Live updates of the Versions page in Chromium (issue 10, item 8), against the dashboard
as `manage.py up` serves it (granian: the web_server fixture), with the real runtime and
Celery worker: a switch made elsewhere moves the Current badge on an open page with no
user action, the action panel and the table never disagree, and an idle page holds one
server-sent-events connection and polls nothing else."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import sign_in
from tests.browser.test_versions_page import PASSWORD, deploy, row

pytestmark = [pytest.mark.browser, pytest.mark.system, pytest.mark.django_db(transaction=True)]

# Counts what the page hears and asks, and after every DOM change compares what the
# action panel says the alias points to with the table's Current: any moment they
# disagree is recorded.
WATCH = """() => {
  window.sbChanged = 0;
  window.sbDisagreements = [];
  document.body.addEventListener("sse:changed", () => { window.sbChanged += 1; });
  const check = () => {
    const current = document.querySelector("[data-testid=summary-current]");
    const shown = current ? current.textContent.trim() : "";
    document.querySelectorAll("[data-testid=action-panel]").forEach((panel) => {
      const said = (panel.textContent.match(/now points to ([0-9a-f]+)/) || [])[1];
      const done = panel.getAttribute("data-state") === "succeeded";
      if ((said && said !== shown) || (done && !said)) {
        window.sbDisagreements.push({ panel: said || "", table: shown });
      }
    });
  };
  new MutationObserver(check).observe(document.body, {
    subtree: true, childList: true, characterData: true, attributes: true,
  });
}"""


def _open_live(page: Page, web_server: str, app: str, user: str) -> list[str]:
    """Signs in, opens the app's Versions page and waits for its stream; returns the list
    the page's later requests are appended to."""
    sign_in(page, web_server, user, PASSWORD)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f"{web_server}/apps/{app}/versions")
    expect(page.locator("#versions-live")).to_have_attribute("data-live-open", "")
    page.evaluate(WATCH)
    return requests


def test_a_cli_switch_moves_the_badge_on_an_open_page_with_no_user_action(
    system, web_server, api, page, tmp_path
):
    name = f"live-{uuid.uuid4().hex[:6]}"
    v1 = deploy(api, tmp_path, name, "v1")
    v2 = deploy(api, tmp_path, name, "v2")
    requests = _open_live(page, web_server, name, "viewer-user")
    expect(row(page, v2).get_by_test_id("current-badge")).to_be_visible()

    api.set_rev(name, v1.short_id, strategy="recreate", reason="a colleague's rollback")

    expect(row(page, v1).get_by_test_id("current-badge")).to_be_visible()
    expect(row(page, v2).get_by_test_id("current-badge")).to_have_count(0)
    expect(page.get_by_test_id("summary-current")).to_have_text(v1.short_id)
    # The page heard it on its stream (it polls every 30 s while the stream is open).
    assert page.evaluate("window.sbChanged") >= 1
    streams = [url for url in requests if url.endswith(f"/apps/{name}/events")]
    assert len(streams) == 1, f"one live connection, not {streams}"


def test_the_action_panel_and_the_table_never_disagree_during_a_rollback(
    system, web_server, api, page, tmp_path
):
    name = f"agree-{uuid.uuid4().hex[:6]}"
    v1 = deploy(api, tmp_path, name, "v1")
    deploy(api, tmp_path, name, "v2")
    _open_live(page, web_server, name, "deployer-user")

    row(page, v1).get_by_test_id("rollback-button").click()
    dialog = page.get_by_test_id("confirm-dialog")
    dialog.get_by_label(re.compile("Recreate")).check()
    dialog.get_by_test_id("confirm-button").click()

    panel = page.get_by_test_id("action-panel")
    expect(panel).to_have_attribute("data-state", "succeeded", timeout=30_000)
    expect(panel).to_contain_text(f"now points to {v1.short_id}")
    expect(row(page, v1).get_by_test_id("current-badge")).to_be_visible()
    assert page.evaluate("window.sbDisagreements") == []


def test_an_idle_page_holds_one_stream_and_polls_nothing(system, web_server, api, page, tmp_path):
    name = f"idle-{uuid.uuid4().hex[:6]}"
    deploy(api, tmp_path, name, "v1")
    # The page's timers run on Playwright's clock, so a minute of idling takes no time.
    page.clock.install()
    requests = _open_live(page, web_server, name, "viewer-user")
    page.evaluate(
        "window.sbAsked = 0;"
        "document.body.addEventListener('htmx:beforeRequest', () => { window.sbAsked += 1; })"
    )
    page.clock.run_for(25_000)  # 25 fallback polls' worth, short of the live 30 s refresh.
    assert page.evaluate("window.sbAsked") == 0
    assert [url for url in requests if url.endswith("/events")] == [
        f"{web_server}/apps/{name}/events"
    ]
    expect(page.locator("#versions-live")).to_have_attribute("data-live-open", "")
