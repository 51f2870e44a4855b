"""The routing table follows alias switches from the state their announcement carries.

An alias switch's Redis message (and the executor's sync call) carries the app's new
state, so the gateway routes by it without reading the database. Several of these tests
announce a state the database does not have: what the gateway then does can only have
come from the announcement.
"""

from __future__ import annotations

import json

import pytest
import redis
from django.conf import settings

from dashboard.controlplane import events
from dashboard.controlplane.events import app_state, publish_app_changed
from dashboard.controlplane.models import App, Revision
from tests.conftest import wait_until
from tests.runtime.conftest import deploy_example

pytestmark = pytest.mark.django_db(transaction=True)


def announced_switch(app: App, target: Revision, generation: int) -> dict:
    """The state move_alias would announce for a switch to `target`, left unsaved here."""
    app.current_revision = target
    app.generation = generation
    return app_state(app)


def version_served(runtime) -> str:
    return runtime.gateway("POST", "/svc/", json={}).json()["version"]


@pytest.fixture
def two_versions():
    """App svc serving v1 (Current, generation 0), and a Deployed v2."""
    v1 = deploy_example("svc", "fast")
    app = App.objects.get(name="svc")
    v2 = deploy_example(app, "fast", current=False, replace={'"fast v1"': '"fast v2"'})
    return app, v1, v2


def test_an_announced_switch_is_routed_by_without_reading_the_database(runtime, two_versions):
    app, v1, v2 = two_versions
    assert version_served(runtime) == "fast v1"

    publish_app_changed("svc", announced_switch(app, v2, generation=1))

    # The database still says v1: the gateway followed the message alone.
    wait_until(lambda: version_served(runtime) == "fast v2", what="the gateway to route to v2")
    assert App.objects.get(name="svc").current_revision_id == v1.id


def test_the_sync_call_applies_the_state_it_carries(runtime, two_versions):
    app, v1, v2 = two_versions
    version_served(runtime)  # Loads the route.

    answer = runtime.admin(
        "POST", "/apps/svc/sync", json={"state": announced_switch(app, v2, generation=1)}
    )

    assert answer.json() == {"current_revision": str(v2.id)}
    assert version_served(runtime) == "fast v2"


def test_a_late_announcement_of_an_earlier_switch_changes_nothing(runtime, two_versions):
    app, v1, v2 = two_versions
    version_served(runtime)
    runtime.admin("POST", "/apps/svc/sync", json={"state": announced_switch(app, v2, 2)})

    # Messages from two processes can arrive in another order than their commits.
    late = runtime.admin("POST", "/apps/svc/sync", json={"state": announced_switch(app, v1, 1)})

    assert late.json() == {"current_revision": str(v2.id)}
    assert version_served(runtime) == "fast v2"


def test_a_database_read_that_began_before_a_switch_does_not_undo_it(runtime, two_versions):
    app, v1, v2 = two_versions
    version_served(runtime)
    runtime.admin("POST", "/apps/svc/sync", json={"state": announced_switch(app, v2, 1)})

    # A read without a state reads generation 0 here, as a read that began before the
    # switch committed would have.
    answer = runtime.admin("POST", "/apps/svc/sync", json={})

    assert answer.json() == {"current_revision": str(v2.id)}
    assert version_served(runtime) == "fast v2"


def test_a_change_that_is_not_a_switch_is_read_from_the_database(runtime, two_versions):
    app, v1, v2 = two_versions
    version_served(runtime)

    Revision.objects.filter(pk=v1.pk).update(status="suspended")
    publish_app_changed("svc")  # A suspend announces no state: the generation is the same.

    wait_until(
        lambda: runtime.gateway("POST", "/svc/", json={}).status_code == 503,
        what="the gateway to answer 503 for the suspended revision",
    )


def test_an_app_created_again_under_the_same_name_is_routed_by_its_new_row(runtime, two_versions):
    app, v1, v2 = two_versions
    version_served(runtime)
    runtime.admin("POST", "/apps/svc/sync", json={"state": announced_switch(app, v2, 5)})
    App.objects.filter(pk=app.pk).update(current_revision=None)
    App.objects.filter(pk=app.pk).delete()

    again = deploy_example("svc", "fast", replace={'"fast v1"': '"fast again"'})

    # The new row starts again at generation 0; its higher id says it is the newer one.
    answer = runtime.admin("POST", "/apps/svc/sync", json={})
    assert answer.json() == {"current_revision": str(again.id)}
    assert version_served(runtime) == "fast again"


def test_a_malformed_state_is_read_from_the_database_instead(runtime, two_versions):
    app, v1, v2 = two_versions
    version_served(runtime)

    answer = runtime.admin("POST", "/apps/svc/sync", json={"state": {"revision": "nonsense"}})

    assert answer.json() == {"current_revision": str(v1.id)}
    assert "malformed state" in runtime.log()


def test_changes_announced_for_another_redis_database_are_not_heard(runtime, two_versions):
    app, v1, v2 = two_versions
    version_served(runtime)
    foreign = events.apps_channel().rsplit(":", 1)[0] + ":999"
    message = {"app": "svc", "state": announced_switch(app, v2, generation=1)}
    # Signed, as the other installation would if it shared this one's key.
    redis.Redis.from_url(settings.REDIS_URL).publish(foreign, json.dumps(events.signed(message)))

    # Announced after it on this installation's channel: once this one is heard, the
    # other would have been too, had the runtime been listening to it.
    Revision.objects.filter(pk=v1.pk).update(status="suspended")
    publish_app_changed("svc")

    wait_until(
        lambda: runtime.gateway("POST", "/svc/", json={}).status_code == 503,
        what="the gateway to answer 503 for the suspended v1",
    )
