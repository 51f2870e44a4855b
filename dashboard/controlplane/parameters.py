"""The ten parameters of DESIGN.md section 3 and the rules that say where each comes from.

Runtime-tunable values belong to the alias (the app): scale changes them, deploys inherit
them. Code-specific values belong to a revision's code: every deploy and set-rev takes
them from the revision, wiping any scale override. The catalogue itself (names, kinds,
defaults, ranges) is the SDK's (sdk/parameters.py), re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings

from dashboard.sdk.parameters import (  # noqa: F401 - the catalogue, re-exported
    CODE,
    CODE_SPECIFIC,
    PARAMETERS,
    RUNTIME,
    RUNTIME_TUNABLE,
    Parameter,
)


def allowed(param: Parameter) -> str:
    """What a value of `param` may be, as refusals and help texts say it."""
    if param.name == "machine_type":
        return "one of " + ", ".join(machine_types())
    return param.numeric_range


class ParameterError(ValueError):
    """One or more values are out of range; `errors` maps each name to a precise message."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(errors.values()))


def machine_types() -> list[str]:
    return list(settings.MACHINE_TYPES)


def defaults() -> dict[str, Any]:
    return {name: p.default for name, p in PARAMETERS.items()}


def validate(values: Mapping[str, Any]) -> dict[str, Any]:
    """Return the values coerced to their types, or raise ParameterError naming each bad one.

    Unknown names are refused too: a misspelt parameter that was silently ignored would
    leave a user believing they had changed something.
    """
    errors: dict[str, str] = {}
    clean: dict[str, Any] = {}
    for name, raw in values.items():
        param = PARAMETERS.get(name)
        if param is None:
            errors[name] = f"unknown parameter {name!r}; known: {', '.join(PARAMETERS)}"
            continue
        if name == "machine_type":
            if not isinstance(raw, str) or raw not in settings.MACHINE_TYPES:
                errors[name] = (
                    f"machine_type {raw!r} is not in the catalogue; allowed: {allowed(param)}"
                )
            else:
                clean[name] = raw
            continue
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            errors[name] = f"{name} must be a whole number in {allowed(param)}, got {raw!r}"
            continue
        try:
            number = int(raw)
        except ValueError:
            errors[name] = f"{name} must be a whole number in {allowed(param)}, got {raw!r}"
            continue
        if not param.minimum <= number <= param.maximum:
            errors[name] = f"{name}={number} is out of range; allowed: {allowed(param)}"
            continue
        clean[name] = number
    if errors:
        raise ParameterError(errors)
    return clean


def check_consistent(values: Mapping[str, Any]) -> None:
    """Cross-field rules: the floor and the buffer cannot exceed the ceiling."""
    errors: dict[str, str] = {}
    ceiling = values["max_concurrency"]
    for name in ("min_concurrency", "concurrency_buffer"):
        if values[name] > ceiling:
            errors[name] = (
                f"{name}={values[name]} exceeds max_concurrency={ceiling}; allowed: 0–{ceiling}"
            )
    if errors:
        raise ParameterError(errors)


def code_values(declared: Mapping[str, Any]) -> dict[str, Any]:
    """The full set of values a revision's code asks for: its declarations over the defaults."""
    values = {**defaults(), **validate(declared)}
    check_consistent(values)
    return values


def for_deploy(
    code: Mapping[str, Any], alias: Mapping[str, Any] | None, reset_scale: bool
) -> dict[str, Any]:
    """Settings a new revision is deployed with.

    Code-specific values always come from the new code. Runtime-tunable values are
    inherited from the alias, unless this is the app's first deploy or --reset-scale was
    given, in which case the code's values apply.
    """
    values = dict(code)
    if alias and not reset_scale:
        values.update({name: alias[name] for name in RUNTIME_TUNABLE if name in alias})
    _fit_to_ceiling(values)
    return values


def for_set_rev(target_code: Mapping[str, Any], alias: Mapping[str, Any]) -> dict[str, Any]:
    """Settings after a rollback: tunables stay on the alias, code-specific from the target."""
    values = dict(target_code)
    values.update({name: alias[name] for name in RUNTIME_TUNABLE if name in alias})
    _fit_to_ceiling(values)
    return values


def apply_scale(
    alias: Mapping[str, Any], changes: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """Apply a scale request to the alias at once.

    Returns the new settings and notes for the user: a code-specific value changed here
    lasts only until the next deploy or set-rev, which take it from the code again.
    """
    clean = validate(changes)
    values = {**alias, **clean}
    check_consistent(values)
    notes = [
        f"{name} is code-specific: the next deploy or set-rev resets it to the revision's value"
        for name in clean
        if name in CODE_SPECIFIC
    ]
    return values, notes


def _fit_to_ceiling(values: dict[str, Any]) -> None:
    # An inherited floor may exceed a new code's ceiling only when max_concurrency is also
    # inherited, so this only triggers for hand-edited data; clamp rather than fail a deploy.
    for name in ("min_concurrency", "concurrency_buffer"):
        values[name] = min(values[name], values["max_concurrency"])
