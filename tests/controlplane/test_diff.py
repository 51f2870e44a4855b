"""Diff two revisions: diff.py on real bundles on disk, and GET /api/v1/apps/APP/diff."""

from __future__ import annotations

import json

import pytest

from dashboard.controlplane import diff
from dashboard.controlplane.models import App, Revision
from tests.controlplane.conftest import add_revision

pytestmark = pytest.mark.django_db


def with_files(revision: Revision, files: dict[str, str | bytes]) -> Revision:
    """Write `files` as the revision's unpacked bundle."""
    for name, content in files.items():
        path = revision.bundle_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)
    return revision


@pytest.fixture
def two(demo_app):
    """Two revisions of `demo`: the old one (Current) and a newer one."""
    old = with_files(
        demo_app.current_revision,
        {
            "app.py": "VERSION = 1\nprint('hello')\n",
            "gone.txt": "bye\n",
            "same.txt": "same\n",
            "data.bin": b"\x00\x01\x02",
            "pkg/util.py": "x = 1\n",
        },
    )
    Revision.objects.filter(pk=old.pk).update(message="first", annotations={"ticket": "A-1"})
    new = add_revision(
        demo_app, code={"machine_type": "M", "startup_timeout": 30}, message="second"
    )
    Revision.objects.filter(pk=new.pk).update(
        annotations={"ticket": "A-2", "team": "core"}, entrypoint="main.py::Fast"
    )
    with_files(
        new,
        {
            "app.py": "VERSION = 2\nprint('hello')\n",
            "same.txt": "same\n",
            "data.bin": b"\x00\x01\x03\x04",
            "pkg/util.py": "x = 1\n",
            "pkg/new.py": "y = 2\n",
        },
    )
    old.refresh_from_db()
    new.refresh_from_db()
    return old, new


def test_files_added_removed_and_changed_are_listed_with_sizes_and_a_text_diff(two):
    old, new = two
    result = diff.diff_revisions(old, new)
    files = result["files"]
    assert files["available"] is True
    assert files["counts"] == {"added": 1, "removed": 1, "changed": 2, "unchanged": 2}
    by_path = {e["path"]: e for e in files["entries"]}
    assert set(by_path) == {"app.py", "data.bin", "gone.txt", "pkg/new.py"}
    assert by_path["pkg/new.py"]["change"] == "added"
    assert by_path["pkg/new.py"]["size_a"] is None and by_path["pkg/new.py"]["size_b"] == 6
    assert by_path["gone.txt"]["change"] == "removed"
    assert "-bye" in by_path["gone.txt"]["diff"]
    app_py = by_path["app.py"]
    assert app_py["change"] == "changed"
    assert app_py["diff"].splitlines()[:2] == ["--- a/app.py", "+++ b/app.py"]
    assert "-VERSION = 1" in app_py["diff"] and "+VERSION = 2" in app_py["diff"]
    binary = by_path["data.bin"]
    assert (binary["size_a"], binary["size_b"]) == (3, 4)
    assert binary["diff"] is None and binary["skipped"] == "binary: no text diff"


def test_entrypoint_message_and_annotations_are_compared(two):
    old, new = two
    result = diff.diff_revisions(old, new)
    fields = {f["name"]: f for f in result["fields"]}
    assert fields["entrypoint"] == {
        "name": "entrypoint",
        "a": "app.py::Fast",
        "b": "main.py::Fast",
        "changed": True,
    }
    assert fields["message"]["a"] == "first" and fields["message"]["b"] == "second"
    assert result["annotations"] == [
        {"key": "team", "a": None, "b": "core", "change": "added"},
        {"key": "ticket", "a": "A-1", "b": "A-2", "change": "changed"},
    ]
    assert result["a"]["current"] is True and result["b"]["current"] is False


def test_settings_say_which_are_runtime_tunable_and_which_code_specific(two):
    old, new = two
    rows = {r["name"]: r for r in diff.diff_revisions(old, new)["settings"]}
    assert list(rows) == list(diff.parameters.PARAMETERS)
    assert rows["machine_type"] == {
        "name": "machine_type",
        "kind": "code-specific",
        "unit": "",
        "a": "S",
        "b": "M",
        "changed": True,
    }
    assert rows["keep_alive"]["kind"] == "runtime-tunable"
    assert rows["keep_alive"]["changed"] is False
    assert rows["startup_timeout"]["changed"] is False


def test_a_text_file_over_the_size_or_line_limit_is_listed_without_its_diff(two):
    old, new = two
    big = "x" * 100 + "\n"
    with_files(old, {"big.txt": big * 3000, "long.txt": "a\n" * 10})
    with_files(new, {"big.txt": big * 2999, "long.txt": "a\n" * (diff.TEXT_MAX_LINES + 1)})
    by_path = {e["path"]: e for e in diff.diff_revisions(old, new)["files"]["entries"]}
    assert by_path["big.txt"]["diff"] is None
    assert by_path["big.txt"]["skipped"] == "larger than 256 KiB: no text diff"
    assert by_path["big.txt"]["size_a"] == 303000
    assert by_path["long.txt"]["diff"] is None
    assert by_path["long.txt"]["skipped"] == "more than 2000 lines: no text diff"


def test_a_missing_bundle_is_said_and_the_rest_still_compared(demo_app):
    old = demo_app.current_revision
    new = add_revision(demo_app, code={"machine_type": "L"})
    with_files(new, {"app.py": "x\n"})
    result = diff.diff_revisions(old, new)
    assert result["files"]["available"] is False
    assert result["files"]["message"] == (
        f"the bundle of {old.short_id} is not on disk: files not compared"
    )
    assert {r["name"]: r["b"] for r in result["settings"]}["machine_type"] == "L"


def test_a_file_without_a_final_newline_is_marked(two):
    old, new = two
    with_files(old, {"tail.txt": "one\ntwo"})
    with_files(new, {"tail.txt": "one\nthree"})
    entry = next(
        e for e in diff.diff_revisions(old, new)["files"]["entries"] if e["path"] == "tail.txt"
    )
    assert (
        "-two\n\\ No newline at end of file\n+three\n\\ No newline at end of file\n"
        in (entry["diff"])
    )


# -- the API ----------------------------------------------------------------------------


def test_the_api_answers_the_diff_to_a_viewer(viewer, two):
    old, new = two
    response = viewer.get("apps/demo/diff", {"a": old.short_id, "b": str(new.id)})
    assert response.status_code == 200
    body = response.json()
    assert body["app"] == "demo"
    assert body["a"]["id"] == str(old.id) and body["b"]["id"] == str(new.id)
    assert body["files"]["counts"]["added"] == 1
    assert json.dumps(body)  # Plain JSON all the way down.


def test_the_api_refuses_missing_unknown_and_foreign_revisions(viewer, two, make_user):
    old, new = two
    missing = viewer.get("apps/demo/diff", {"a": old.short_id})
    assert missing.status_code == 400
    assert missing.json()["error"]["message"].startswith("b is required")
    extra = viewer.get("apps/demo/diff", {"a": old.short_id, "b": new.short_id, "c": "1"})
    assert extra.status_code == 400
    assert extra.json()["error"]["code"] == "unknown_field"
    assert extra.json()["error"]["message"] == "unknown query parameter 'c'; allowed: a, b"
    short = viewer.get("apps/demo/diff", {"a": "abc", "b": new.short_id})
    assert short.status_code == 400
    assert "too short" in short.json()["error"]["message"]
    unknown = viewer.get("apps/demo/diff", {"a": "0123456789", "b": new.short_id})
    assert unknown.status_code == 404
    other = App.objects.create(name="other")
    foreign = add_revision(other)
    refused = viewer.get("apps/demo/diff", {"a": foreign.short_id, "b": new.short_id})
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "revision_of_another_app"
    no_app = viewer.get("apps/nope/diff", {"a": old.short_id, "b": new.short_id})
    assert no_app.status_code == 404
    assert no_app.json()["error"]["message"] == "no app named 'nope'"


def test_the_api_refuses_anonymous_callers_and_other_methods(viewer, two):
    from tests.controlplane.conftest import ApiClient

    old, new = two
    anonymous = ApiClient(None).get("apps/demo/diff", {"a": old.short_id, "b": new.short_id})
    assert anonymous.status_code == 401
    post = viewer.post("apps/demo/diff", {"a": old.short_id})
    assert post.status_code == 405
