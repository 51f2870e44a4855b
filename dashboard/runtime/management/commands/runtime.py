"""`manage.py runtime`: the gateway, the runtime admin API and the runners they supervise."""

from __future__ import annotations

import asyncio

import uvloop
from django.conf import settings
from django.core.management.base import BaseCommand

from dashboard.runtime import sandbox
from dashboard.runtime.backend import ensure_cluster
from dashboard.runtime.server import serve


class Command(BaseCommand):
    help = (
        "Run the runtime: the gateway (SWITCHBOARD_GATEWAY_HOST/PORT), the loopback admin API "
        "(SWITCHBOARD_RUNTIME_PORT) and the runner processes they supervise."
    )

    def handle(self, *args, **options) -> None:
        # Deployed code runs only sandboxed: no runtime at all rather than an open one.
        if settings.BACKEND == "local":
            sandbox.ensure_available()
        ensure_cluster()
        # uvloop roughly halves the gateway's own CPU per proxied request, which is what
        # limits its throughput on a small machine shared with the runners.
        asyncio.run(
            serve(settings.GATEWAY_HOST, settings.GATEWAY_PORT, settings.RUNTIME_ADMIN_PORT),
            loop_factory=uvloop.new_event_loop,
        )
