"""Bundling FILE.py::Class into the tar.gz that deploy uploads."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from dashboard.cli import bundle


def names_in(data: bytes) -> set[str]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        return {m.name for m in archive.getmembers()}


@pytest.fixture
def app_dir(tmp_path):
    root = tmp_path / "myapp"
    (root / "pkg").mkdir(parents=True)
    (root / "app.py").write_text("from dashboard.sdk import App\nclass Hello(App):\n    pass\n")
    (root / "pkg" / "helpers.py").write_text("X = 1\n")
    (root / "data.json").write_text("{}")
    return root


def test_it_bundles_the_files_directory_with_the_entrypoint_relative_to_it(app_dir):
    data, entrypoint = bundle.build(f"{app_dir / 'app.py'}::Hello")

    assert entrypoint == "app.py::Hello"
    assert names_in(data) == {"app.py", "pkg/helpers.py", "data.json"}


def test_it_leaves_out_git_caches_virtualenvs_compiled_files_and_hidden_dirs(app_dir):
    for folder in (".git", "__pycache__", ".venv", ".mypy_cache", "pkg/__pycache__"):
        (app_dir / folder).mkdir(parents=True, exist_ok=True)
        (app_dir / folder / "junk.txt").write_text("junk")
    (app_dir / "stale.pyc").write_bytes(b"\0")
    (app_dir / "pkg" / "helpers.cpython-312.pyc").write_bytes(b"\0")

    data, _ = bundle.build(f"{app_dir / 'app.py'}::Hello")

    assert names_in(data) == {"app.py", "pkg/helpers.py", "data.json"}


def test_it_keeps_hidden_files_at_the_top_but_not_hidden_directories(app_dir):
    (app_dir / ".env.example").write_text("A=1")
    (app_dir / ".secrets").mkdir()
    (app_dir / ".secrets" / "key").write_text("k")

    data, _ = bundle.build(f"{app_dir / 'app.py'}::Hello")

    assert ".env.example" in names_in(data)
    assert ".secrets/key" not in names_in(data)


def test_it_refuses_a_bundle_over_20_mb_before_uploading(app_dir):
    # Random bytes do not compress, so the archive really exceeds the limit.
    (app_dir / "weights.bin").write_bytes(os.urandom(21 * 1024 * 1024))

    with pytest.raises(bundle.BundleError, match="larger than 20 MB"):
        bundle.build(f"{app_dir / 'app.py'}::Hello")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("app.py", "expected FILE.py::Class"),
        ("app.py::", "expected FILE.py::Class"),
        ("app.txt::Hello", "is not a .py file"),
        ("missing.py::Hello", "no such file"),
        ("app.py::not-a-class", "is not a Python class name"),
    ],
)
def test_it_refuses_a_malformed_target_with_a_precise_message(
    app_dir, monkeypatch, target, message
):
    (app_dir / "app.txt").write_text("")
    monkeypatch.chdir(app_dir)

    with pytest.raises(bundle.BundleError, match=message):
        bundle.build(target)
