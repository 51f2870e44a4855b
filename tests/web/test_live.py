"""Live updates of the Versions page: the server-sent events stream (web/live.py), served
by granian as in production, and the one refresh that renders the table with its panels.

The stream is read over real HTTP from the granian server on the test database; the
changes are published on the real Redis channel, as the control plane does on commit.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis
from django.conf import settings

from dashboard.controlplane import events
from dashboard.controlplane.models import OperationKind, OperationState, Source
from dashboard.web import live, progress
from tests.conftest import wait_until
from tests.web.conftest import signed_in_over_http
from tests.web.factories import make_app, make_operation, make_revision

HTMX = {"HTTP_HX_REQUEST": "true"}


def _events(stream: httpx.Response) -> Iterator[bytes]:
    """The stream's events, without its heartbeat comments."""
    for chunk in stream.iter_raw():
        for event in chunk.split(b"\n\n"):
            if event and not event.startswith((b":", b"retry:")):
                yield event + b"\n\n"


def _open_streams(redis_client) -> dict[bytes, bytes]:
    keys = list(redis_client.scan_iter(f"{settings.REDIS_NAMESPACE}:live:*"))
    return dict(zip(keys, redis_client.mget(keys), strict=True)) if keys else {}


@pytest.mark.django_db(transaction=True)
def test_the_stream_is_refused_without_a_session_or_for_an_unknown_app(web_server, redis_client):
    make_app("demo")
    # No session: like every page, to the sign-in form, and no stream is counted.
    anonymous = httpx.get(f"{web_server}/apps/demo/events")
    assert anonymous.status_code == 302
    assert anonymous.headers["location"] == "/login/?next=/apps/demo/events"
    client = signed_in_over_http(web_server)
    unknown = client.get("/apps/nope/events")
    assert unknown.status_code == 404
    assert "nope" in unknown.text and unknown.headers["content-type"].startswith("text/plain")
    assert client.post("/apps/demo/events").status_code in (403, 405)  # CSRF or method.
    assert _open_streams(redis_client) == {}


@pytest.mark.django_db(transaction=True)
def test_the_stream_says_changed_for_its_own_app_only_and_carries_nothing_else(
    web_server, redis_client
):
    app, other = make_app("demo"), make_app("other")
    client = signed_in_over_http(web_server)
    with client.stream("GET", "/apps/demo/events") as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"] == "text/event-stream"
        assert stream.headers["cache-control"] == "no-store"
        received = _events(stream)
        wait_until(lambda: len(_open_streams(redis_client)) == 1, what="the stream counted")
        channel = redis.Redis.from_url(settings.REDIS_URL)
        # Another app's change, and messages that are not the control plane's, are not
        # passed on; then this app's own change is.
        channel.publish(events.pages_channel(), json.dumps({"app_id": other.pk}))
        channel.publish(events.pages_channel(), b"not json")
        channel.publish(events.pages_channel(), json.dumps(["app_id", app.pk]))
        events.publish_page_changed(app.pk)  # Outside a transaction: at once.
        assert next(received) == b"event: changed\ndata: \n\n"
    # Closing the stream frees its place in the session's count.
    wait_until(lambda: set(_open_streams(redis_client).values()) <= {b"0"}, what="released")


@pytest.mark.django_db(transaction=True)
def test_a_session_holds_at_most_its_limit_of_streams(web_server, redis_client):
    make_app("demo")
    client = signed_in_over_http(web_server)
    limit = settings.LIVE_MAX_PER_SESSION
    streams = [client.stream("GET", "/apps/demo/events") for _ in range(limit)]
    opened = [s.__enter__() for s in streams]
    try:
        assert [s.status_code for s in opened] == [200] * limit
        refused = client.get("/apps/demo/events")
        assert refused.status_code == 429
        assert f"already holds {limit} live connections" in refused.text
        assert "polling" in refused.text
        held = redis_client.get(live._streams_key(client.cookies["sessionid"]))
        assert held == str(limit).encode()
    finally:
        for stream in streams:
            stream.__exit__(None, None, None)
    wait_until(lambda: set(_open_streams(redis_client).values()) <= {b"0"}, what="released")
    with client.stream("GET", "/apps/demo/events") as again:
        assert again.status_code == 200


# -- the one refresh: the table and the running panels together ---------------------------


@pytest.mark.django_db
def test_a_refresh_renders_the_table_and_each_running_panel_out_of_band(deployer, demo):
    app, old, current, _failed = demo
    user = deployer.session["_auth_user_id"]
    key = str(uuid.uuid4())
    progress.remember(key, int(user), f"Roll back {old.short_id}", "")
    make_operation(
        app,
        OperationKind.SET_REV,
        revision=old,
        state=OperationState.RUNNING,
        requester_id=int(user),
        source=Source.DASHBOARD,
        idempotency_key=key,
        steps=("stopping the Current revision's runners",),
    )
    response = deployer.get(f"/apps/demo/versions?stamp=x&panels={key}", **HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="versions-region"' in html
    assert f'id="panel-{key}"' in html and 'hx-swap-oob="morph"' in html
    assert "stopping the Current revision" in html
    # Asked with the stamp it has and no running panel, nothing changed: 204.
    stamp = html.split("stamp=", 1)[1].split('"', 1)[0]
    assert deployer.get(f"/apps/demo/versions?stamp={stamp}", **HTMX).status_code == 204


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("panels", "message"),
    [
        ("not-a-key", "&#x27;not-a-key&#x27; is not an action key."),
        (",".join(str(uuid.uuid4()) for _ in range(11)), "At most 10 panels refresh at once"),
    ],
)
def test_a_refresh_refuses_bad_panel_keys(viewer, demo, panels, message):
    response = viewer.get(f"/apps/demo/versions?panels={panels}", **HTMX)
    assert response.status_code == 400
    assert message in response.content.decode()


@pytest.mark.django_db
def test_a_roll_forward_panel_says_switch_to(deployer, demo):
    """Item 4: a set-rev to a newer revision than the Current it replaced is titled
    "Switch to" in its panel, as in its dialog; to an older one, "Roll back"."""
    app, old, current, _failed = demo
    user = int(deployer.session["_auth_user_id"])
    newer = make_revision(app, message="newer than current")
    titles = {}
    for target in (newer, old):
        key = str(uuid.uuid4())
        make_operation(
            app,
            OperationKind.SET_REV,
            revision=target,
            requester_id=user,
            source=Source.DASHBOARD,
            idempotency_key=key,
            params={"revision": str(target.id), "from_revision": str(current.id)},
        )
        html = deployer.get(f"/apps/demo/actions/{key}", **HTMX).content.decode()
        titles[target] = html.split("<strong>", 1)[1].split("</strong>", 1)[0]
    assert titles[newer] == f"Switch to {newer.short_id}"
    assert titles[old] == f"Roll back {old.short_id}"
