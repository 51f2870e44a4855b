"""The parameter catalogue (sdk/parameters.py) is the one home of the ten settings.

The control plane re-exports it with its rules (controlplane/parameters.py); the SDK's
App defaults and the CLI's `apps scale` flags are derived from it. These tests check what
each of them ends up declaring, as an app author and a CLI user see it.
"""

from __future__ import annotations

import re

import click

from dashboard.cli.main import SCALE_FLAGS
from dashboard.cli.main import scale as scale_command
from dashboard.controlplane import parameters
from dashboard.controlplane.parameters import CODE, PARAMETERS
from dashboard.sdk import App
from dashboard.sdk.loader import SETTING_NAMES, describe


def test_the_sdk_declares_every_parameter_in_the_catalogues_order():
    assert tuple(PARAMETERS) == SETTING_NAMES


def test_the_sdks_defaults_are_the_catalogues():
    assert {name: getattr(App, name) for name in SETTING_NAMES} == parameters.defaults()


def test_an_app_that_declares_nothing_deploys_with_the_catalogues_defaults():
    class Plain(App):
        pass

    declared = describe(Plain)["settings"]
    assert parameters.code_values(declared) == parameters.defaults()


def _scale_options() -> dict[str, click.Option]:
    return {p.name: p for p in scale_command.params if isinstance(p, click.Option)}


def test_apps_scale_has_one_flag_per_parameter():
    options = _scale_options()
    assert tuple(PARAMETERS) == SCALE_FLAGS
    assert set(PARAMETERS) <= set(options)
    for name in PARAMETERS:
        assert options[name].opts == ["--" + name.replace("_", "-")]


def test_apps_scale_help_states_each_parameters_range_and_kind():
    options = _scale_options()
    for name, param in PARAMETERS.items():
        help_text = options[name].help
        assert help_text.startswith("Code-specific: ") == (param.kind == CODE), name
        if name == "machine_type":
            examples = re.search(r"e\.g\. ([A-Z, ]+)\)", help_text).group(1).split(", ")
            assert set(examples) <= set(parameters.machine_types()), help_text
            continue
        allowed = parameters.allowed(param).replace("–", "-")
        assert f"({allowed})" in help_text, (name, help_text, allowed)
