"""Inside each Ray Serve replica of a revision (the Ray backend, ray_backend.py).

A replica runs none of the app's code itself: it supervises one runner (runner.py) in the
runner sandbox (sandboxed.py) on its own node and forwards each request to it over the
runner's Unix socket. So deployed code on Ray is kept apart exactly as a local runner is
(own uid and namespaces, no route to the node's loopback, the bundle read-only at /app, a
scrubbed environment, the machine type's limits), and what a request is answered — health,
404/405/400/500, JSON — is runner.py's alone.

Serve imports this module on whichever node runs the replica, so it imports no Django and
nothing of the runtime but sandboxed.py: the runtime sends the sandbox's policy, the
machine type's limits and the app's network in the constructor's arguments.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

from dashboard.runtime import sandboxed

# How much of the runner's output a failed setup() reports (the replica's log has it all).
TAIL_LINES = 40
# Hop-by-hop headers, which belong to one connection, not to the request or its answer.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "host", "content-length"}
)


FOLDER_PREFIX = "sb-replica-"


def sweep_orphans() -> None:
    """Remove the folders of this machine's replicas that were killed: a graceful stop
    removes its own, a killed replica (runners kill, a lost node, Ray stopped) cannot."""
    for folder in Path(tempfile.gettempdir()).glob(f"{FOLDER_PREFIX}*-*"):
        pid = folder.name.removeprefix(FOLDER_PREFIX).partition("-")[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:
            pass  # Alive, and another user's.


class SetupFailed(RuntimeError):
    """The runner did not get ready. The message ends with one line saying why (the line
    the runtime makes the revision's error), after the tail of the runner's output."""


class Replica:
    """One replica of a revision: its constructor starts the revision's runner in the
    sandbox and returns once setup() finished there; requests go to that runner; a
    graceful stop (Serve calls __del__) has the runner run teardown() and end."""

    async def __init__(
        self,
        entrypoint: str,
        prefix: str,
        max_multiplexing: int,
        policy: sandboxed.Policy,
        machine: dict[str, int],
        network: str,
    ) -> None:
        self.prefix = prefix
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        if not policy.enabled:  # Said in the replica's log, and in a failed setup()'s tail.
            self.tail.append(f"WARNING {sandboxed.UNSANDBOXED_WARNING}")
            print(self.tail[-1], file=sys.stderr, flush=True)
        # Serve's runtime_env working_dir is the replica's working directory: the bundle,
        # unpacked on this node. Its modes are this node's umask's; the sandbox's uid
        # must read it.
        bundle = Path.cwd()
        if policy.enabled:
            sandboxed.share_bundle(bundle)
        # The runner's socket folder, on this node; private to this replica's user. Named
        # with the worker's pid, so that a later replica removes it if this one is killed.
        sweep_orphans()
        self.folder = Path(tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-"))
        run_dir = self.folder / "run"
        run_dir.mkdir()
        try:
            self.runner = await sandboxed.start_runner(
                policy,
                [
                    "--machine",
                    json.dumps(machine),
                    "--entrypoint",
                    entrypoint,
                    "--max-multiplexing",
                    str(max_multiplexing),
                ],
                bundle_dir=bundle,
                run_dir=run_dir,
                owned=[self.folder],
                network=network,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
        except BaseException as exc:
            shutil.rmtree(self.folder, ignore_errors=True)
            if isinstance(exc, FileNotFoundError) and policy.enabled:
                raise SetupFailed(
                    f"the runner sandbox cannot start on node {socket.gethostname()}: "
                    f"{exc.filename} is missing (install bubblewrap, or the Python of the "
                    "runtime at the same path)"
                ) from exc
            raise
        self.output = asyncio.ensure_future(self._copy_output())
        message = await self.runner.ready_message()
        if message != "ready":
            self.runner.kill()
            code = await self.runner.wait()
            await self.output
            why = message.removeprefix("setup failed: ") or (
                f"the runner ended before setup() finished (exit code {code})"
            )
            tail = "\n".join(self.tail)
            raise SetupFailed(f"the runner's output ends:\n{tail}\n{why}")
        self.session = aiohttp.ClientSession(
            # No cap of its own: Serve's max_ongoing_requests is the replica's (and an
            # `apps scale` changes it in place).
            connector=aiohttp.UnixConnector(path=str(run_dir / sandboxed.SOCKET_NAME), limit=0),
            timeout=aiohttp.ClientTimeout(total=None),
            auto_decompress=False,
        )

    async def _copy_output(self) -> None:
        """The runner's output, line by line, into the replica's log (the worker's stdout,
        which `logs` reads), its last lines kept for a failed setup()'s report."""
        stream = self.runner.stdout
        assert stream is not None
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip("\n")
            self.tail.append(text)
            print(text, flush=True)

    async def __call__(self, request: Any) -> Any:
        from starlette.responses import Response

        path = request.url.path.removeprefix(self.prefix) or "/"
        query = request.url.query
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        async with self.session.request(
            request.method,
            f"http://runner{path}" + (f"?{query}" if query else ""),
            data=await request.body(),
            headers=headers,
        ) as answer:
            body = await answer.read()
            kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
            return Response(body, answer.status, headers=kept)

    def check_health(self) -> None:
        """Serve's health check: a replica whose runner ended is replaced."""
        code = self.runner.returncode
        if code is not None:
            raise RuntimeError(f"the runner ended (exit code {code})")

    async def __del__(self) -> None:
        # Serve calls __del__ once it stops a replica gracefully, its requests drained:
        # the runner runs the app's teardown() and ends, as a local runner does (its end
        # removes the replica's folder).
        if (session := getattr(self, "session", None)) is not None:
            await session.close()
        if (runner := getattr(self, "runner", None)) is not None:
            runner.terminate()
            await runner.wait()
            await self.output
