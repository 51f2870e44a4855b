"""Finding Redis for `manage.py up`, or starting a private one when there is none.

Plain Python with no Django in it. A newcomer's machine often has no Redis listening;
rather than wait on a worker that can never connect, `up` starts Debian's `redis-server`
of its own: on a Unix socket inside the (private) var dir, behind a random password, with
persistence off, and stops it on exit. A Redis the user named but that does not answer is
reported at once, by URL, instead.
"""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

import redis

INSTALL_HINT = "install it (Debian/Ubuntu: apt-get install redis-server) or set REDIS_URL"


class RedisUnavailable(Exception):
    """No usable Redis; the message says which one and what to do."""


def redacted(url: str) -> str:
    """The URL as it may be printed: any password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def answers(url: str, timeout: float = 1.0) -> bool:
    """Whether a Redis at url answers PING within timeout seconds (no retries)."""
    client = redis.Redis.from_url(
        url, socket_connect_timeout=timeout, socket_timeout=timeout, retry_on_timeout=False
    )
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError, ValueError):
        return False
    finally:
        client.close()


def check(url: str, timeout: float = 3.0) -> None:
    """Raise RedisUnavailable naming url unless a Redis there answers within timeout."""
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
    except (redis.RedisError, OSError, ValueError) as exc:
        raise RedisUnavailable(
            f"Redis at {redacted(url)} (REDIS_URL) is unreachable: {str(exc).rstrip('.')}. "
            "Start it, fix REDIS_URL, or unset REDIS_URL to let `up` run its own."
        ) from None
    finally:
        client.close()


class EmbeddedRedis:
    """A private redis-server on a Unix socket in `directory`, for one `up` run."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.socket = directory / "redis.sock"
        self.config = directory / "redis.conf"
        self.password = secrets.token_hex(24)

    @staticmethod
    def executable() -> str:
        found = shutil.which("redis-server")
        if found is None:
            raise RedisUnavailable(
                "Redis is not running and redis-server is not installed: " + INSTALL_HINT + "."
            )
        return found

    @property
    def url(self) -> str:
        """For redis-py (the cache, sessions, the runtime's change notifications)."""
        return f"unix://:{quote(self.password)}@{self.socket}?db=0"

    def command(self) -> list[str]:
        """The server's command line; the password stays in a 0600 file, not in `ps`."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        lines = [
            "port 0",  # No TCP at all: only those who can open the var dir can connect.
            f"unixsocket {self.socket}",
            "unixsocketperm 700",
            f"requirepass {self.password}",
            f"dir {self.directory}",
            'save ""',
            "appendonly no",
            "daemonize no",
        ]
        self.config.touch(mode=0o600)
        self.config.chmod(0o600)
        self.config.write_text("\n".join(lines) + "\n")
        return [self.executable(), str(self.config)]

    def answers(self) -> bool:
        return self.socket.exists() and answers(self.url, timeout=0.5)


def celery_redis_url(url: str) -> str:
    """Celery (kombu) spells a Unix-socket Redis `redis+socket://…?virtual_host=N`."""
    parts = urlsplit(url)
    if parts.scheme != "unix":
        return url
    db = dict(parse_qsl(parts.query)).get("db", "0")
    return urlunsplit(("redis+socket", parts.netloc, parts.path, f"virtual_host={db}", ""))
