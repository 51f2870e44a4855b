"""One `manage.py up` per var dir and per port, refused before anything starts.

A second `up` used to find the first one's processes answering its health checks, report
"Switchboard is running", join its broker and then die on "address already in use". Now
it takes an exclusive lock on the var dir and checks that its ports are free first, and
says which process holds what it needs.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from pathlib import Path

import psutil


class AlreadyInUse(Exception):
    """The var dir or a port is taken; the message names the holder and what to do."""


def _holder(port: int) -> str:
    """Who listens on port, as 'pid N (command)' when this user may see it."""
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                if conn.pid is None:
                    break
                name = " ".join(psutil.Process(conn.pid).cmdline()[:4])
                return f"pid {conn.pid} ({name})"
    return "another process"


def check_port(host: str, port: int, what: str) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise AlreadyInUse(
                f"port {port} ({what}) is already in use by {_holder(port)}: stop it, or "
                "give this installation other ports (see README, Configuration)"
            ) from None


def lock_var_dir(var_dir: Path) -> int:
    """Hold var_dir for this process's lifetime (the lock goes when the process does)."""
    path = var_dir / "up.pid"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise AlreadyInUse(
            f"another `manage.py up` (pid {holder}) is already running on {var_dir}: "
            f"stop it first (Ctrl-C in its terminal, or kill -TERM {holder})"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd
