"""Finding an App class inside an unpacked bundle and describing it.

Used in a child process by both the import check (`python -m dashboard.sdk.inspect`)
and the runner, so user code is never imported into a control-plane process.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import resource
import sys
from pathlib import Path
from typing import Any

from dashboard.sdk.app import ENDPOINT_ATTR, App

# The settings an App declares: its annotated class attributes, in their order.
SETTING_NAMES = tuple(App.__annotations__)


class EntrypointError(Exception):
    pass


def parse_entrypoint(entrypoint: str) -> tuple[str, str]:
    """Split 'path/app.py::ClassName', refusing anything that is not that shape."""
    path, sep, class_name = entrypoint.partition("::")
    if not sep or not path.endswith(".py") or not class_name.isidentifier():
        raise EntrypointError(
            f"entrypoint must look like path/to/file.py::ClassName, got {entrypoint!r}"
        )
    if path.startswith("/") or ".." in Path(path).parts:
        raise EntrypointError(f"entrypoint path must stay inside the bundle, got {path!r}")
    return path, class_name


def load_app_class(bundle_dir: Path, entrypoint: str) -> type[App]:
    rel_path, class_name = parse_entrypoint(entrypoint)
    file = bundle_dir / rel_path
    if not file.is_file():
        raise EntrypointError(f"{rel_path} is not in the bundle")
    # The bundle's own folder (and the file's) come first, so its sibling modules import.
    for folder in (str(file.parent), str(bundle_dir)):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    module_name = "switchboard_app_" + file.stem
    spec = importlib.util.spec_from_file_location(module_name, file)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    cls = getattr(module, class_name, None)
    if cls is None:
        raise EntrypointError(f"{rel_path} defines no {class_name}")
    if not (inspect.isclass(cls) and issubclass(cls, App)):
        raise EntrypointError(f"{class_name} in {rel_path} is not a subclass of dashboard.sdk.App")
    return cls


def endpoints(cls: type[App]) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Map each endpoint path to (method name, HTTP methods)."""
    found: dict[str, tuple[str, tuple[str, ...]]] = {}
    for name, member in inspect.getmembers(cls, callable):
        marker = getattr(member, ENDPOINT_ATTR, None)
        if marker:
            path, methods = marker
            found[path] = (name, methods)
    return found


def describe(cls: type[App]) -> dict[str, Any]:
    """What the control plane needs to know: declared settings and endpoint paths."""
    return {
        "settings": {name: getattr(cls, name) for name in SETTING_NAMES},
        "endpoints": sorted(endpoints(cls)),
    }


# The machine type's limits (settings.MACHINE_TYPES keys) and the rlimits they become.
LIMITS = {
    "memory_mb": (resource.RLIMIT_AS, 1024 * 1024),
    "processes": (resource.RLIMIT_NPROC, 1),
    "open_files": (resource.RLIMIT_NOFILE, 1),
    "file_mb": (resource.RLIMIT_FSIZE, 1024 * 1024),
}


def apply_limits(machine: dict[str, int]) -> None:
    """The machine type's limits, applied to this process (inside its sandbox).

    Lowering a limit and raising niceness need no privilege, so a spare applies them to
    itself once it knows its machine type; children inherit them.
    """
    for key, (limit, unit) in LIMITS.items():
        if key in machine:
            value = int(machine[key]) * unit
            resource.setrlimit(limit, (value, value))
    if machine.get("nice"):
        os.nice(int(machine["nice"]))
