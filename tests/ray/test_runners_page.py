"""The Runners page in Chromium with the Ray backend: one row per Serve replica, with the
node each runs on, for a revision whose replicas spread over both of the cluster's nodes."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from dashboard.controlplane.models import Role
from tests.browser.conftest import save_screenshot, sign_in
from tests.ray.test_ray_backend import deploy_with, running
from tests.web.factories import make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_runners_page_lists_each_replica_with_its_node_on_both_nodes(sb, system, page: Page):
    deploy_with(sb, "spread-page", "v1", min_concurrency=2, max_concurrency=2)
    both = running(sb, "spread-page", 2)
    assert len({r["node_id"] for r in both}) == 2, both

    viewer = make_user(Role.VIEWER)
    sign_in(page, system.api_url, viewer.username, "pw-secret-1")
    page.goto(f"{system.api_url}/apps/spread-page/runners")
    labels = set()
    for replica in both:
        row = page.locator(f'[data-testid=runner-row][data-runner="{replica["id"]}"]')
        expect(row).to_have_attribute("data-state", "IDLE")
        # Both nodes have the one address: the start of the node's id tells them apart.
        label = f"{replica['node']} ({replica['node_id'][:8]})"
        expect(row.locator('td[data-label="Node"]')).to_have_text(label)
        labels.add(label)
    assert len(labels) == 2
    save_screenshot(page, "runners-ray.png")
