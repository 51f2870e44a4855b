"""What changed between two revisions of an app: the one diff the API, CLI and dashboard show.

Compared: entrypoint, message, annotations, the settings each was deployed with (each
marked runtime-tunable or code-specific, from the parameter catalogue), and the bundles'
files: added, removed and changed with their sizes, and a unified diff for a changed text
file up to TEXT_MAX_BYTES and TEXT_MAX_LINES on either side (else it says why it was
skipped). The whole answer is bounded: at most MAX_FILES file rows and TOTAL_MAX_LINES
diff lines, beyond which files are listed without their diff.

Deploy preview (`deploy --check`) compares the Current revision with a bundle that is only
staged, so a side is a plain `Side`, made from a revision or from a staged bundle.
"""

from __future__ import annotations

import difflib
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dashboard.controlplane import parameters
from dashboard.controlplane.models import Revision

TEXT_MAX_BYTES = 256 * 1024
TEXT_MAX_LINES = 2000
TOTAL_MAX_LINES = 20_000
MAX_FILES = 2000
# Files with the same size are compared by content in blocks of this size.
_BLOCK = 64 * 1024


@dataclass(frozen=True)
class Side:
    """One side of a diff: a revision's recorded facts and where its bundle is."""

    label: str
    entrypoint: str
    message: str = ""
    annotations: Mapping[str, str] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)
    bundle_dir: Path | None = None
    info: Mapping[str, Any] = field(default_factory=dict)


def side_of(revision: Revision, app_current_id: Any = None) -> Side:
    return Side(
        label=revision.short_id,
        entrypoint=revision.entrypoint,
        message=revision.message,
        annotations=revision.annotations or {},
        settings=revision.settings or {},
        bundle_dir=revision.bundle_dir,
        info={
            "id": str(revision.id),
            "short_id": revision.short_id,
            "status": revision.status,
            "current": app_current_id == revision.id,
            "created_at": revision.created_at.isoformat() if revision.created_at else None,
            "deployed_by": revision.deployed_by.get_username() if revision.deployed_by else None,
        },
    )


def diff_revisions(a: Revision, b: Revision) -> dict[str, Any]:
    """The diff from revision `a` to revision `b` (both of one app)."""
    current = a.app.current_revision_id
    return diff_sides(side_of(a, current), side_of(b, current))


def diff_sides(a: Side, b: Side) -> dict[str, Any]:
    return {
        "a": dict(a.info),
        "b": dict(b.info),
        "fields": [
            _field("entrypoint", a.entrypoint, b.entrypoint),
            _field("message", a.message, b.message),
        ],
        "annotations": _annotations(a.annotations, b.annotations),
        "settings": settings_rows(a.settings, b.settings),
        "files": _files(a, b),
        "limits": {
            "text_max_bytes": TEXT_MAX_BYTES,
            "text_max_lines": TEXT_MAX_LINES,
            "total_max_lines": TOTAL_MAX_LINES,
            "max_files": MAX_FILES,
        },
    }


def _field(name: str, a: str, b: str) -> dict[str, Any]:
    return {"name": name, "a": a, "b": b, "changed": a != b}


def _annotations(a: Mapping[str, str], b: Mapping[str, str]) -> list[dict[str, Any]]:
    rows = []
    for key in sorted(set(a) | set(b)):
        if key not in a:
            change = "added"
        elif key not in b:
            change = "removed"
        else:
            change = "changed" if a[key] != b[key] else "same"
        rows.append({"key": key, "a": a.get(key), "b": b.get(key), "change": change})
    return rows


def settings_rows(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every parameter of the catalogue, in its order, with its kind and both values
    (None where a side has none, e.g. a revision whose import check never ran)."""
    return [
        {
            "name": name,
            "kind": param.kind,
            "unit": param.unit,
            "a": a.get(name),
            "b": b.get(name),
            "changed": a.get(name) != b.get(name),
        }
        for name, param in parameters.PARAMETERS.items()
    ]


# -- files ----------------------------------------------------------------------------


def _listing(root: Path | None) -> dict[str, int] | None:
    """Regular files under `root` (relative POSIX path → size), or None when it is gone.

    Bundles hold only regular files and directories (bundles.stage refuses the rest);
    anything else found here is skipped, and no link is followed.
    """
    if root is None or not root.is_dir():
        return None
    files: dict[str, int] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            path = Path(dirpath, name)
            info = path.lstat()
            if stat.S_ISREG(info.st_mode):
                files[path.relative_to(root).as_posix()] = info.st_size
    return files


def _same_content(a: Path, b: Path) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            block_a, block_b = fa.read(_BLOCK), fb.read(_BLOCK)
            if block_a != block_b:
                return False
            if not block_a:
                return True


def _text_lines(path: Path) -> list[str] | None:
    """The file's lines if it is UTF-8 text without NUL bytes, else None (binary)."""
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        return None


class _Budget:
    def __init__(self) -> None:
        self.lines = TOTAL_MAX_LINES


def _text_diff(
    rel: str, a: Path | None, b: Path | None, sizes: tuple[int, int], budget: _Budget
) -> tuple[str | None, str]:
    """A unified diff of one file, or None and why it was skipped."""
    if max(sizes) > TEXT_MAX_BYTES:
        return None, f"larger than {TEXT_MAX_BYTES // 1024} KiB: no text diff"
    lines_a = _text_lines(a) if a else []
    lines_b = _text_lines(b) if b else []
    if lines_a is None or lines_b is None:
        return None, "binary: no text diff"
    if max(len(lines_a), len(lines_b)) > TEXT_MAX_LINES:
        return None, f"more than {TEXT_MAX_LINES} lines: no text diff"
    if budget.lines <= 0:
        return None, f"the diff's budget of {TOTAL_MAX_LINES} lines is spent: no text diff"
    lines = list(
        difflib.unified_diff(
            lines_a,
            lines_b,
            fromfile=f"a/{rel}" if a else "/dev/null",
            tofile=f"b/{rel}" if b else "/dev/null",
        )
    )
    budget.lines -= len(lines)
    # A last line without a newline would run into the next one; say so as diff(1) does.
    text = "".join(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
    )
    return text, ""


def _files(a: Side, b: Side) -> dict[str, Any]:
    files_a, files_b = _listing(a.bundle_dir), _listing(b.bundle_dir)
    missing = [s.label for s, files in ((a, files_a), (b, files_b)) if files is None]
    if missing:
        return {
            "available": False,
            "message": f"the bundle of {' and '.join(missing)} is not on disk: files not compared",
            "entries": [],
            "counts": {},
        }
    assert files_a is not None and files_b is not None
    budget = _Budget()
    entries: list[dict[str, Any]] = []
    counts = {"added": 0, "removed": 0, "changed": 0, "unchanged": 0}
    for rel in sorted(set(files_a) | set(files_b)):
        size_a, size_b = files_a.get(rel), files_b.get(rel)
        path_a = a.bundle_dir / rel if size_a is not None else None  # type: ignore[operator]
        path_b = b.bundle_dir / rel if size_b is not None else None  # type: ignore[operator]
        if path_a is None:
            change = "added"
        elif path_b is None:
            change = "removed"
        elif size_a == size_b and _same_content(path_a, path_b):
            counts["unchanged"] += 1
            continue
        else:
            change = "changed"
        counts[change] += 1
        if len(entries) >= MAX_FILES:
            continue
        diff, skipped = _text_diff(rel, path_a, path_b, (size_a or 0, size_b or 0), budget)
        entries.append(
            {
                "path": rel,
                "change": change,
                "size_a": size_a,
                "size_b": size_b,
                "diff": diff,
                "skipped": skipped,
            }
        )
    listed = len(entries)
    total = counts["added"] + counts["removed"] + counts["changed"]
    return {
        "available": True,
        "message": ""
        if listed == total
        else f"only the first {listed} of {total} changed files are listed",
        "entries": entries,
        "counts": counts,
    }


# -- deploy preview -------------------------------------------------------------------

# Where a previewed deploy's value comes from (DESIGN.md section 3).
FROM_CODE = "code"
FROM_DEFAULT = "default"
FROM_CURRENT = "previous_current"


def deploy_settings(
    code: Mapping[str, Any], alias: Mapping[str, Any] | None, reset_scale: bool
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The settings a deploy of `code` would get (parameters.for_deploy decides them) and,
    per parameter, where its value comes from: the code, the default (the code keeps the
    catalogue's value), or the previous Current's alias (runtime-tunables inherited)."""
    values = parameters.for_deploy(code, alias or None, reset_scale)
    inherited = bool(alias) and not reset_scale
    rows = []
    for name, param in parameters.PARAMETERS.items():
        if param.kind == parameters.RUNTIME and inherited and name in (alias or {}):
            source = FROM_CURRENT
        elif code.get(name) == param.default:
            source = FROM_DEFAULT
        else:
            source = FROM_CODE
        rows.append(
            {
                "name": name,
                "kind": param.kind,
                "unit": param.unit,
                "value": values[name],
                "code": code.get(name),
                "current": (alias or {}).get(name),
                "source": source,
            }
        )
    return values, rows
