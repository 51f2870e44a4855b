"""DESIGN section 3's table, row by row: each parameter's kind, default and allowed range,
with both ends accepted and one step past each end refused by a message that says what
is allowed. (The API and CLI answer with these messages; tests/controlplane/test_scale.py
and tests/cli check that they reach the user.)"""

from __future__ import annotations

import pytest

from dashboard.controlplane import parameters

# name: (kind, default, lowest, highest) as DESIGN.md section 3 states them.
TABLE = {
    "keep_alive": ("runtime-tunable", 10, 0, 86400),
    "min_concurrency": ("runtime-tunable", 0, 0, "max_concurrency"),
    "max_concurrency": ("runtime-tunable", 2, 1, 1000),
    "concurrency_buffer": ("runtime-tunable", 0, 0, "max_concurrency"),
    "concurrency_buffer_perc": ("runtime-tunable", 0, 0, 100),
    "scaling_delay": ("runtime-tunable", 0, 0, 3600),
    "request_timeout": ("runtime-tunable", 3600, 1, 86400),
    "max_multiplexing": ("code-specific", 1, 1, 1000),
    "startup_timeout": ("code-specific", 600, 1, 3600),
    "machine_type": ("code-specific", "XS", None, None),
}


def test_there_are_exactly_the_ten_parameters_of_the_table_with_their_kinds_and_defaults():
    assert set(parameters.PARAMETERS) == set(TABLE)
    for name, (kind, default, _, _) in TABLE.items():
        assert parameters.PARAMETERS[name].kind == kind, name
        assert parameters.defaults()[name] == default, name


@pytest.mark.parametrize("name", [n for n, row in TABLE.items() if isinstance(row[3], int)])
def test_each_numeric_range_accepts_both_ends_and_refuses_one_past_each(name):
    _, _, low, high = TABLE[name]
    assert parameters.validate({name: low}) == {name: low}
    assert parameters.validate({name: high}) == {name: high}
    for outside in (low - 1, high + 1):
        with pytest.raises(parameters.ParameterError) as refused:
            parameters.validate({name: outside})
        assert refused.value.errors[name] == (
            f"{name}={outside} is out of range; allowed: {low}–{high}"
        )


@pytest.mark.parametrize("name", ["min_concurrency", "concurrency_buffer"])
def test_a_floor_or_buffer_may_reach_max_concurrency_but_not_pass_it(name):
    assert parameters.code_values({"max_concurrency": 4, name: 4})[name] == 4
    with pytest.raises(parameters.ParameterError) as refused:
        parameters.code_values({"max_concurrency": 4, name: 5})
    assert refused.value.errors[name] == f"{name}=5 exceeds max_concurrency=4; allowed: 0–4"


def test_machine_type_is_one_of_the_installations_catalogue():
    for machine in ("XS", "S", "M", "L"):
        assert parameters.validate({"machine_type": machine}) == {"machine_type": machine}
    with pytest.raises(parameters.ParameterError) as refused:
        parameters.validate({"machine_type": "XXL"})
    assert "allowed: one of XS, S, M, L" in refused.value.errors["machine_type"]


def test_a_code_specific_value_changed_by_scale_comes_with_a_note_that_it_will_be_reset():
    alias = parameters.code_values({})
    values, notes = parameters.apply_scale(alias, {"startup_timeout": 30, "keep_alive": 60})
    assert (values["startup_timeout"], values["keep_alive"]) == (30, 60)
    assert notes == [
        "startup_timeout is code-specific: the next deploy or set-rev resets it to the "
        "revision's value"
    ]
