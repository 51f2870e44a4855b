"""Bad arguments and unreachable servers end the CLI with a non-zero status and one line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from dashboard.cli.main import main
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def isolated_config(tmp_path, monkeypatch):
    # Never read or write a developer's real ~/.config/switchboard.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("SWITCHBOARD_URL", raising=False)
    monkeypatch.delenv("SWITCHBOARD_TOKEN", raising=False)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got {lines!r}"
    return lines[0]


def test_a_revision_shorter_than_eight_characters_is_refused(capsys):
    status, _, err = run(capsys, "apps", "set-rev", "demo", "abc")

    assert status == 2
    # The API's own words for the same reference (controlplane.rules.revision_ref).
    assert "revision prefix 'abc' is too short: give at least 8 hex characters" in one_line(err)


def test_logs_refuses_both_a_revision_and_a_runner(capsys):
    status, _, err = run(capsys, "logs", "demo", "--revision", "abcdef12", "--runner", "r-1")

    assert status == 2
    assert "give --revision or --runner, not both" in one_line(err)


def test_scale_without_any_setting_says_what_to_give(capsys):
    status, _, err = run(capsys, "apps", "scale", "demo")

    assert status == 2
    assert "give at least one setting" in one_line(err)


def test_scale_refuses_a_non_numeric_value(capsys):
    status, _, err = run(capsys, "apps", "scale", "demo", "--keep-alive", "soon")

    assert status == 2
    assert "'soon' is not a valid integer" in one_line(err)


def test_an_unknown_strategy_lists_the_allowed_ones(capsys):
    status, _, err = run(capsys, "apps", "set-rev", "demo", "abcdef12", "--strategy", "yolo")

    assert status == 2
    assert "'rolling', 'recreate'" in one_line(err)


def test_an_annotation_without_equals_sign_is_refused(capsys, tmp_path):
    (tmp_path / "app.py").write_text("class A: pass\n")
    target = f"{tmp_path / 'app.py'}::A"

    status, _, err = run(capsys, "deploy", target, "--app-name", "x", "--annotation", "ticket")

    assert status == 2
    assert "expected KEY=VALUE, got 'ticket'" in one_line(err)


def test_deploy_of_a_malformed_target_fails_before_any_network_call(capsys):
    status, _, err = run(capsys, "deploy", "nothing-here.py::App", "--app-name", "x")

    assert status == 1
    assert one_line(err) == "error: no such file: nothing-here.py"


def test_a_bad_app_name_is_refused_before_building_or_any_network_call(monkeypatch):
    # The installed script in a process of its own, with no Django settings and no server:
    # it must check the name with the control API's rule without either.
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    monkeypatch.setenv("SWITCHBOARD_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("SWITCHBOARD_TOKEN", "sbt_whatever")
    target = f"{ROOT / 'examples' / 'demo' / 'app.py'}::Demo"

    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "switchboard"), "deploy", target, "--app-name", "Bad Name!"],
        capture_output=True,
        text=True,
    )

    assert result.returncode == 2
    assert result.stdout == ""  # No "uploading ... bundle" line.
    assert (
        "'Bad Name!' is not a valid app name: 1–63 characters, lowercase letters, digits and "
        "'-', starting with a letter" in one_line(result.stderr)
    )


def test_a_missing_token_says_how_to_get_one(capsys):
    status, _, err = run(capsys, "apps", "list")

    assert status == 1
    assert "no API token: set SWITCHBOARD_TOKEN" in one_line(err)


def test_an_unreachable_api_is_named_with_its_url(capsys, monkeypatch):
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("SWITCHBOARD_URL", url)
    monkeypatch.setenv("SWITCHBOARD_TOKEN", "sbt_whatever")

    status, out, err = run(capsys, "apps", "list-rev", "demo", "--json")

    assert status == 1
    assert one_line(err).startswith(f"error: control API unreachable at {url}: ")
    assert json.loads(out)["error"]["code"] == "unreachable"


def test_the_console_script_is_installed_and_lists_every_command():
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "switchboard"), "apps", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )

    for name in ("list", "list-rev", "set-rev", "rollout", "delete-rev", "scale", "suspend"):
        assert name in result.stdout
    for name in ("resume", "runners", "history"):
        assert name in result.stdout
