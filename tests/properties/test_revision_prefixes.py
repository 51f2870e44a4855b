"""Properties of revision references: which strings name a revision, and how."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dashboard.controlplane.errors import BadRequest
from dashboard.controlplane.revisions import MIN_PREFIX, _id_range, normalise

HEX = "0123456789abcdef"


@given(st.uuids(), st.integers(MIN_PREFIX, 32), st.booleans(), st.booleans())
def test_any_prefix_of_8_or_more_hex_characters_of_an_id_names_a_range_holding_it(
    rev, length, upper, dashed
):
    text = str(rev) if dashed else rev.hex
    ref = text[: length + (text[:length].count("-") if dashed else 0)]
    ref = ref.upper() if upper else ref

    hex_ref = normalise(ref)
    low, high = _id_range(hex_ref)

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
    low, high = _id_range(prefix)
    assert (low <= b <= high) == b.hex.startswith(prefix)
    assert isinstance(low, uuid.UUID)
