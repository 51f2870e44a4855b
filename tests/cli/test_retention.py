"""`switchboard apps pin/unpin` and `switchboard apps retention` against the real system."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from dashboard.controlplane.models import App, Operation, Revision
from tests.conftest import wait_until
from tests.controlplane.conftest import add_revision

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]


def _app_with_history(name: str, count: int) -> list[Revision]:
    """`count` Deployed revisions, oldest first; the newest is Current."""
    app = App.objects.create(name=name, auth_mode="public")
    start = timezone.now() - timedelta(days=1)
    revs = [
        add_revision(app, created_at=start + timedelta(minutes=i), message=f"r{i}")
        for i in range(count)
    ]
    app.current_revision = revs[-1]
    app.save()
    return revs


def test_pin_and_unpin_mark_a_revision_and_a_pinned_one_is_not_deleted(sb):
    old, *_ = _app_with_history("pinned-cli", 3)

    pinned = sb("apps", "pin", "pinned-cli", old.short_id, "--reason", "known good")
    assert pinned.stdout.strip().endswith(f"pinned revision {old.short_id} of pinned-cli")
    assert Revision.objects.get(pk=old.pk).pinned

    refused = sb("apps", "delete-rev", "pinned-cli", old.short_id, ok=False)
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"error: revision {old.short_id} is pinned (pinned by ada at ")
    assert "unpin it first — a pinned revision is never deleted" in refused.stderr
    assert Revision.objects.filter(pk=old.pk, pinned=True).exists()
    assert not Operation.objects.filter(kind="delete_rev").exists()

    again = sb("apps", "pin", "pinned-cli", old.short_id, ok=False)
    assert again.returncode == 1
    assert "is already pinned by ada at" in again.stderr

    unpinned = sb("apps", "unpin", "pinned-cli", old.short_id)
    assert unpinned.stdout.strip().endswith(f"unpinned revision {old.short_id} of pinned-cli")
    assert not Revision.objects.get(pk=old.pk).pinned
    kinds = [
        o["kind"]
        for o in json.loads(sb("apps", "history", "pinned-cli", "--json").stdout)["operations"]
    ]
    assert kinds[:2] == ["unpin", "pin"]


def test_retention_shows_dry_runs_and_changes_the_settings(sb):
    revs = _app_with_history("trim-cli", 8)
    sb("apps", "pin", "trim-cli", revs[0].short_id)

    shown = sb("apps", "retention", "trim-cli").stdout
    assert shown.strip() == "retention of trim-cli is on: it keeps the newest 20"

    dry = sb("apps", "retention", "trim-cli", "--keep", "2", "--dry-run").stdout
    assert "would delete 4 revision(s):" in dry
    for gone in revs[1:5]:
        assert f"{gone.short_id}  Deployed  older than the newest 2, not protected" in dry
    assert f"{revs[0].short_id}  Deployed  pinned by ada at " in dry
    assert "one of the last 3 Deployed revisions" in dry
    assert App.objects.get(name="trim-cli").retention_keep == 20  # A dry run changes nothing.
    assert Revision.objects.filter(app__name="trim-cli").count() == 8

    changed = sb("apps", "retention", "trim-cli", "--keep", "2", "--reason", "disk")
    assert changed.stdout.strip().endswith("retention of trim-cli is on: it keeps the newest 2")
    wait_until(
        lambda: Revision.objects.filter(app__name="trim-cli").count() == 4,
        what="retention to delete the 4 unprotected old revisions",
    )
    left = set(Revision.objects.filter(app__name="trim-cli").values_list("pk", flat=True))
    assert left == {revs[i].pk for i in (0, 5, 6, 7)}

    off = sb("apps", "retention", "trim-cli", "--off", "--json")
    assert json.loads(off.stdout)["retention"] == {"keep": 2, "enabled": False}


def test_retention_refuses_a_count_out_of_range_before_calling_the_api(sb):
    _app_with_history("bad-keep", 1)
    refused = sb("apps", "retention", "bad-keep", "--keep", "0", ok=False)
    assert refused.returncode == 2
    assert "0 is not in the range 1<=x<=1000" in refused.stderr
    assert App.objects.get(name="bad-keep").retention_keep == 20
