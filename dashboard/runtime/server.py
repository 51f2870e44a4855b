"""The runtime process: gateway, admin API, supervisor, autoscaler and routing, one event loop.

On SIGTERM or SIGINT it stops every runner (teardown() within a short bound, then
SIGKILL) before exiting; should the runtime die without that chance, each runner gets
SIGKILL from the kernel (PR_SET_PDEATHSIG, see backend.py). No runner outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from aiohttp import web

from dashboard.runtime.admin_api import AdminApi
from dashboard.runtime.auth import Authenticator
from dashboard.runtime.autoscaler import Autoscaler
from dashboard.runtime.backend import RunnerBackend, make_backend
from dashboard.runtime.gateway import Gateway
from dashboard.runtime.routing import RoutingTable
from dashboard.runtime.supervisor import Supervisor

log = logging.getLogger("switchboard.runtime")


def autoscaler_for(backend: RunnerBackend) -> type[Autoscaler]:
    """Ray Serve scales a Ray revision's replicas itself; Switchboard keeps its application."""
    if type(backend).__name__ == "RayBackend":
        from dashboard.runtime.ray_backend import RayAutoscaler

        return RayAutoscaler
    return Autoscaler


async def _site(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True).start()
    return runner


async def serve(
    gateway_host: str, gateway_port: int, admin_port: int, backend: RunnerBackend | None = None
) -> None:
    supervisor: Supervisor | None = None

    def route_changed(name, old, new) -> None:
        if supervisor is not None:
            supervisor.route_changed(name, old, new)

    routing = RoutingTable(route_changed)
    backend = backend or make_backend()
    supervisor = Supervisor(backend, routing.apps)
    await routing.reload_all()

    router = Gateway(routing, supervisor, Authenticator())
    gateway = router.server()
    await gateway.start(gateway_host, gateway_port)
    admin_api = AdminApi(routing, supervisor, router.traffic)
    admin = await _site(admin_api.web_app(), "127.0.0.1", admin_port)
    background = [
        asyncio.ensure_future(routing.follow_changes()),
        asyncio.ensure_future(autoscaler_for(backend)(supervisor, routing.apps).run()),
    ]
    log.info(
        "runtime up: gateway http://%s:%s, admin API http://127.0.0.1:%s (%d apps)",
        gateway_host,
        gateway_port,
        admin_port,
        len(routing.apps),
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()

    log.info("stopping: no more autoscaling; stopping every runner")
    for task in background:
        task.cancel()
    for task in background:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await supervisor.shutdown()
    await gateway.close()
    await admin.cleanup()
    log.info("runtime stopped")
