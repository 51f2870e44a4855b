"""Properties of revision references: which strings name a revision, and which revision
the one resolver (controlplane.revisions.resolve) finds for them."""

from __future__ import annotations

import uuid

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashboard.controlplane.errors import BadRequest, ControlError, NotFound
from dashboard.controlplane.models import App, Revision, RevisionStatus
from dashboard.controlplane.revisions import MIN_PREFIX, id_range, normalise, resolve

HEX = "0123456789abcdef"


@given(st.uuids(), st.integers(MIN_PREFIX, 32), st.booleans(), st.booleans())
def test_any_prefix_of_8_or_more_hex_characters_of_an_id_names_a_range_holding_it(
    rev, length, upper, dashed
):
    text = str(rev) if dashed else rev.hex
    ref = text[: length + (text[:length].count("-") if dashed else 0)]
    ref = ref.upper() if upper else ref

    hex_ref = normalise(ref)
    low, high = id_range(hex_ref)

    assert rev.hex.startswith(hex_ref)
    assert low <= rev <= high


@given(st.text(HEX, min_size=1, max_size=MIN_PREFIX - 1))
def test_a_prefix_shorter_than_8_is_refused_saying_so(ref):
    with pytest.raises(BadRequest) as refused:
        normalise(ref)
    assert "too short" in refused.value.message


@given(
    st.text(min_size=1, max_size=64).filter(
        lambda s: any(c not in HEX + "-" for c in s.strip().lower())
    )
)
def test_anything_not_hex_is_refused_naming_it(ref):
    with pytest.raises(BadRequest) as refused:
        normalise(ref)
    assert "is not a revision id" in refused.value.message


@given(st.text(HEX, min_size=33, max_size=64))
def test_more_than_32_hex_characters_is_refused(ref):
    with pytest.raises(BadRequest) as refused:
        normalise(ref)
    assert "longer than a revision id" in refused.value.message


@given(st.uuids(), st.uuids())
def test_two_ids_share_a_range_only_when_they_share_the_prefix(a, b):
    prefix = a.hex[:MIN_PREFIX]
    low, high = id_range(prefix)
    assert (low <= b <= high) == b.hex.startswith(prefix)
    assert isinstance(low, uuid.UUID)


# -- resolution against the database: the one resolver the API, dashboard, CLI and
# gateway call (controlplane.revisions.resolve) --------------------------------------------


def _id(prefix: str, rest: int) -> uuid.UUID:
    return uuid.UUID(prefix + f"{rest:0{32 - len(prefix)}x}")


@pytest.mark.django_db
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    # Each revision: (shares how many of the common prefix's characters, which app).
    st.lists(st.tuples(st.integers(6, 12), st.booleans()), min_size=1, max_size=9),
    st.integers(MIN_PREFIX, 12),
    st.booleans(),
)
def test_a_prefix_names_the_apps_one_revision_having_it_whatever_other_apps_hold(
    revisions, ref_length, dashed
):
    common = "c0ffee15deadbeef"
    with transaction.atomic():
        mine, theirs = App.objects.create(name="mine"), App.objects.create(name="theirs")
        made = [
            make(app=mine if own else theirs, rev_id=_id(common[:shared], n))
            for n, (shared, own) in enumerate(revisions)
        ]
        hex_ref = common[:ref_length]
        ref = str(uuid.UUID(hex_ref.ljust(32, "0")))[: ref_length + (ref_length > 8)]
        ref = ref if dashed else hex_ref
        own = [r for r in made if r.app_id == mine.pk and r.id.hex.startswith(hex_ref)]
        other = [r for r in made if r.app_id != mine.pk and r.id.hex.startswith(hex_ref)]

        try:
            found = resolve(mine, ref)
        except ControlError as exc:
            refused = exc
        else:
            refused = None
        transaction.set_rollback(True)

    if len(own) == 1:
        assert refused is None and found.id == own[0].id
    elif own:
        assert isinstance(refused, BadRequest) and refused.code == "ambiguous_revision"
        assert set(refused.details["candidates"]) <= {str(r.id) for r in own}
    elif other:
        assert isinstance(refused, NotFound) and refused.code == "revision_of_another_app"
        assert refused.message == f"revision {ref!r} belongs to app 'theirs', not 'mine'"
    else:
        assert isinstance(refused, NotFound)
        assert refused.message == f"app 'mine' has no revision {ref!r}"


@pytest.mark.django_db
def test_the_apps_revision_is_found_behind_many_of_other_apps_with_the_same_prefix():
    # The dashboard once looked at only the first 3 matches of every app, and missed it.
    mine, theirs = App.objects.create(name="mine"), App.objects.create(name="theirs")
    for n in range(5):
        make(app=theirs, rev_id=_id("abcdef12", n))
    wanted = make(app=mine, rev_id=_id("abcdef12", 99))
    assert resolve(mine, "abcdef12").id == wanted.id


def make(*, app: App, rev_id: uuid.UUID) -> Revision:
    return Revision.objects.create(
        id=rev_id,
        app=app,
        status=RevisionStatus.DEPLOYED,
        entrypoint="app.py::Demo",
        bundle_sha256="0" * 64,
        bundle_size=1,
    )
