"""Where the CLI finds the control API and its token.

Environment first (SWITCHBOARD_URL, SWITCHBOARD_TOKEN), each on its own, then the file
that `manage.py up` writes ($XDG_CONFIG_HOME/switchboard/config.json, by default under
~/.config), so a newcomer's CLI works right after the Quick start with no set-up.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8000"


class ConfigError(Exception):
    """The configuration is missing or unreadable; the message says how to fix it."""


@dataclass(frozen=True)
class Config:
    url: str
    token: str
    source: str  # Where the values came from, for error messages.


def config_path(environ: dict[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME", "~")) / ".config")
    return Path(base).expanduser() / "switchboard" / "config.json"


def read_file(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object with 'url' and 'token'")
    return {k: str(v) for k, v in data.items() if k in ("url", "token") and v}


def write_file(path: Path, url: str, token: str) -> None:
    """Write the file readable by its owner only: it holds a secret."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"url": url, "token": token}, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)


def load(environ: dict[str, str] | None = None) -> Config:
    environ = os.environ if environ is None else environ
    path = config_path(environ)
    from_file = read_file(path)
    url = environ.get("SWITCHBOARD_URL") or from_file.get("url") or DEFAULT_URL
    token = environ.get("SWITCHBOARD_TOKEN") or from_file.get("token") or ""
    if not token:
        raise ConfigError(
            f"no API token: set SWITCHBOARD_TOKEN, or run `manage.py up` once (it writes {path})"
        )
    source = "environment" if environ.get("SWITCHBOARD_TOKEN") else str(path)
    return Config(url=url.rstrip("/"), token=token, source=source)
