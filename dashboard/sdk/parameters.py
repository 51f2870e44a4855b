"""The ten parameters of DESIGN.md section 3: name, kind, default, range, unit and help.

The one home of the catalogue. The control plane (controlplane/parameters.py: the rules
of where each value comes from, validation, the machine types of this installation), the
SDK's App defaults, the CLI's `apps scale` flags and the API document all derive from it.
Part of the SDK (standard library only): an app's sandbox sees it, and the CLI, which
imports no Django, may use it.
"""

from __future__ import annotations

from dataclasses import dataclass

RUNTIME = "runtime-tunable"
CODE = "code-specific"
# Bounded by max_concurrency rather than a fixed ceiling.
BOUNDED_BY_MAX = ("min_concurrency", "concurrency_buffer")


@dataclass(frozen=True)
class Parameter:
    name: str
    kind: str
    default: int | str
    minimum: int | None = None
    maximum: int | None = None
    unit: str = ""
    help: str = ""

    @property
    def numeric_range(self) -> str:
        """Its allowed numbers, e.g. "1–1000" ("" for machine_type, a name)."""
        if self.minimum is None:
            return ""
        if self.name in BOUNDED_BY_MAX:
            return f"{self.minimum}–max_concurrency"
        return f"{self.minimum}–{self.maximum}"


PARAMETERS: dict[str, Parameter] = {
    p.name: p
    for p in (
        Parameter("keep_alive", RUNTIME, 10, 0, 86400, "s", "idle seconds before a runner stops"),
        Parameter("min_concurrency", RUNTIME, 0, 0, 1000, "", "runners kept warm at all times"),
        Parameter("max_concurrency", RUNTIME, 2, 1, 1000, "", "most runners at once"),
        Parameter("concurrency_buffer", RUNTIME, 0, 0, 1000, "", "spare warm runners"),
        Parameter("concurrency_buffer_perc", RUNTIME, 0, 0, 100, "%", "spare runners as % of busy"),
        Parameter("scaling_delay", RUNTIME, 0, 0, 3600, "s", "queueing time before scaling up"),
        Parameter("request_timeout", RUNTIME, 3600, 1, 86400, "s", "longest a request may run"),
        Parameter("max_multiplexing", CODE, 1, 1, 1000, "", "concurrent requests per runner"),
        Parameter("startup_timeout", CODE, 600, 1, 3600, "s", "longest setup() may take"),
        Parameter("machine_type", CODE, "XS", help="memory cap and CPU share per runner"),
    )
}
RUNTIME_TUNABLE = tuple(n for n, p in PARAMETERS.items() if p.kind == RUNTIME)
CODE_SPECIFIC = tuple(n for n, p in PARAMETERS.items() if p.kind == CODE)


def default(name: str) -> int | str:
    return PARAMETERS[name].default
