"""Packing an app's directory into the tar.gz bundle that deploy uploads."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

MAX_BUNDLE_BYTES = 20 * 1024 * 1024  # The control API's default limit; refuse before uploading.
SKIPPED_DIRS = frozenset({"__pycache__", ".git", ".venv", "node_modules"})


class BundleError(Exception):
    """The target cannot be bundled; the message says why."""


def parse_target(target: str) -> tuple[Path, str]:
    """Split FILE.py::Class into the file's path and the class name, checking both."""
    file_part, sep, class_name = target.rpartition("::")
    if not sep or not file_part or not class_name:
        raise BundleError(f"expected FILE.py::Class, got {target!r}")
    if not class_name.isidentifier():
        raise BundleError(f"{class_name!r} is not a Python class name")
    path = Path(file_part)
    if path.suffix != ".py":
        raise BundleError(f"{file_part!r} is not a .py file")
    if not path.is_file():
        raise BundleError(f"no such file: {file_part}")
    return path.resolve(), class_name


def _skipped(relative: Path) -> bool:
    # Hidden directories (.git, .venv, .mypy_cache...) and caches are never part of an app.
    *dirs, name = relative.parts
    if any(d in SKIPPED_DIRS or d.startswith(".") for d in dirs):
        return True
    return name.endswith((".pyc", ".pyo")) or name in SKIPPED_DIRS


def included_files(root: Path) -> list[Path]:
    """Every regular file under root that goes into the bundle, sorted for reproducibility."""
    files = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.is_symlink() or not path.is_file() or _skipped(relative):
            continue
        files.append(relative)
    return files


def build(target: str, *, limit: int = MAX_BUNDLE_BYTES) -> tuple[bytes, str]:
    """Return (tar.gz bytes, entrypoint relative to the bundle) for FILE.py::Class."""
    path, class_name = parse_target(target)
    root = path.parent
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for relative in included_files(root):
            info = archive.gettarinfo(str(root / relative), arcname=relative.as_posix())
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with open(root / relative, "rb") as fh:
                archive.addfile(info, fh)
            if buffer.tell() > limit:
                break
    data = buffer.getvalue()
    if len(data) > limit:
        raise BundleError(
            f"bundle of {root} is larger than {limit // (1024 * 1024)} MB compressed; "
            "move data files out of the app's directory (or load them in setup())"
        )
    return data, f"{path.name}::{class_name}"
