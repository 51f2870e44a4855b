"""Properties of the parameter rules (DESIGN.md section 3), over generated values.

The example tests in tests/controlplane show each rule once; these check that the rules
hold for every value hypothesis can find: validation accepts exactly the documented
ranges, and deploy, set-rev and scale draw each value from where DESIGN says.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from hypothesis import given
from hypothesis import strategies as st

from dashboard.controlplane import parameters
from dashboard.controlplane.parameters import CODE_SPECIFIC, PARAMETERS, RUNTIME_TUNABLE

NUMERIC = [p for p in PARAMETERS.values() if p.name != "machine_type"]


@st.composite
def consistent_settings(draw) -> dict:
    """A full, valid set of settings, as a revision's code may declare them."""
    values = {}
    for p in NUMERIC:
        values[p.name] = draw(st.integers(p.minimum, p.maximum))
    values["machine_type"] = draw(st.sampled_from(sorted(settings.MACHINE_TYPES)))
    ceiling = values["max_concurrency"]
    values["min_concurrency"] = min(values["min_concurrency"], ceiling)
    values["concurrency_buffer"] = min(values["concurrency_buffer"], ceiling)
    return values


@given(st.sampled_from(NUMERIC), st.integers(-(10**9), 10**9))
def test_a_number_is_accepted_exactly_when_it_is_in_its_documented_range(param, number):
    inside = param.minimum <= number <= param.maximum
    try:
        clean = parameters.validate({param.name: number})
    except parameters.ParameterError as exc:
        assert not inside
        assert exc.errors[param.name] == (
            f"{param.name}={number} is out of range; allowed: {parameters.allowed(param)}"
        )
    else:
        assert inside
        assert clean == {param.name: number}


@given(
    st.sampled_from(NUMERIC),
    st.one_of(
        st.booleans(), st.floats(allow_nan=True), st.none(), st.lists(st.integers()), st.text()
    ),
)
def test_anything_but_a_whole_number_is_refused_with_the_allowed_range(param, raw):
    if isinstance(raw, str):
        try:
            int(raw)
        except ValueError:
            pass
        else:
            return  # A whole number in a string (a form field) is a number.
    with pytest.raises(parameters.ParameterError) as refused:
        parameters.validate({param.name: raw})
    assert parameters.allowed(param) in refused.value.errors[param.name]


@given(st.text(min_size=1, max_size=40).filter(lambda n: n not in PARAMETERS))
def test_an_unknown_name_is_refused_and_named(name):
    with pytest.raises(parameters.ParameterError) as refused:
        parameters.validate({name: 1})
    assert repr(name) in refused.value.errors[name]


@given(consistent_settings(), consistent_settings(), st.booleans())
def test_deploy_takes_code_specific_values_from_code_and_tunables_from_the_alias(
    code, alias, reset_scale
):
    deployed = parameters.for_deploy(code, alias, reset_scale)

    for name in CODE_SPECIFIC:
        assert deployed[name] == code[name]
    source = code if reset_scale else alias
    for name in ("keep_alive", "max_concurrency", "scaling_delay", "request_timeout"):
        assert deployed[name] == source[name]
    # The floor and the buffer never exceed the ceiling, whatever was inherited.
    for name in ("min_concurrency", "concurrency_buffer"):
        assert deployed[name] == min(source[name], deployed["max_concurrency"])


@given(consistent_settings())
def test_a_first_deploy_uses_the_codes_values(code):
    assert parameters.for_deploy(code, None, reset_scale=False) == code


@given(consistent_settings(), consistent_settings())
def test_a_rollback_keeps_the_alias_tunables_and_takes_code_specific_values_from_the_target(
    target, alias
):
    switched = parameters.for_set_rev(target, alias)

    for name in CODE_SPECIFIC:
        assert switched[name] == target[name]
    for name in RUNTIME_TUNABLE:
        assert switched[name] == alias[name]


@given(consistent_settings(), st.sampled_from(NUMERIC), st.data())
def test_scale_changes_exactly_what_was_asked_and_notes_each_code_specific_value(
    alias, param, data
):
    value = data.draw(st.integers(param.minimum, param.maximum))
    try:
        scaled, notes = parameters.apply_scale(alias, {param.name: value})
    except parameters.ParameterError as exc:
        # Only the cross-field rule may refuse an in-range value: floor/buffer over ceiling.
        changed = {**alias, param.name: value}
        assert changed["min_concurrency"] > changed["max_concurrency"] or (
            changed["concurrency_buffer"] > changed["max_concurrency"]
        )
        assert "exceeds max_concurrency" in str(exc)
        return
    assert scaled == {**alias, param.name: value}
    assert (len(notes) == 1) == (param.name in CODE_SPECIFIC)
