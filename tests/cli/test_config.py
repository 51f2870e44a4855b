"""Where the CLI finds the control API's URL and its token."""

from __future__ import annotations

import json
import stat

import pytest

from dashboard.cli import config


def write(path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_it_reads_the_file_under_xdg_config_home(tmp_path):
    write(tmp_path / "switchboard" / "config.json", {"url": "http://h:1/", "token": "sbt_file"})

    cfg = config.load({"XDG_CONFIG_HOME": str(tmp_path)})

    assert (cfg.url, cfg.token) == ("http://h:1", "sbt_file")


def test_it_falls_back_to_dot_config_in_home(tmp_path):
    write(tmp_path / ".config" / "switchboard" / "config.json", {"url": "http://h:2", "token": "t"})

    assert config.load({"HOME": str(tmp_path)}).url == "http://h:2"


def test_environment_variables_win_over_the_file_each_on_its_own(tmp_path):
    write(tmp_path / "switchboard" / "config.json", {"url": "http://file", "token": "file"})
    env = {"XDG_CONFIG_HOME": str(tmp_path)}

    assert config.load({**env, "SWITCHBOARD_TOKEN": "env"}).token == "env"
    assert config.load({**env, "SWITCHBOARD_TOKEN": "env"}).url == "http://file"
    assert config.load({**env, "SWITCHBOARD_URL": "http://env"}).url == "http://env"
    assert config.load({**env, "SWITCHBOARD_URL": "http://env"}).token == "file"


def test_the_url_defaults_to_the_local_web_port(tmp_path):
    cfg = config.load({"XDG_CONFIG_HOME": str(tmp_path), "SWITCHBOARD_TOKEN": "t"})

    assert cfg.url == "http://127.0.0.1:8000"


def test_without_any_token_it_says_how_to_get_one(tmp_path):
    with pytest.raises(config.ConfigError, match="set SWITCHBOARD_TOKEN, or run `manage.py up`"):
        config.load({"XDG_CONFIG_HOME": str(tmp_path)})


def test_a_malformed_file_is_reported_with_its_path(tmp_path):
    path = tmp_path / "switchboard" / "config.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")

    with pytest.raises(config.ConfigError, match=str(path)):
        config.load({"XDG_CONFIG_HOME": str(tmp_path)})


def test_the_written_file_round_trips_and_only_its_owner_can_read_it(tmp_path):
    path = config.config_path({"XDG_CONFIG_HOME": str(tmp_path)})

    config.write_file(path, "http://127.0.0.1:18000", "sbt_secret")

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    cfg = config.load({"XDG_CONFIG_HOME": str(tmp_path)})
    assert (cfg.url, cfg.token) == ("http://127.0.0.1:18000", "sbt_secret")
