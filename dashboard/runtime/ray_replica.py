"""Inside each Ray Serve replica of a revision (the Ray backend, ray_backend.py).

Serve imports this module on whichever node runs the replica, so it needs only the SDK:
no Django, nothing of the runtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any


class Replica:
    """One replica of a revision: the App instance, set up in the constructor.

    Answers like runner.py's runner: /_health, the app's endpoints with JSON in and out,
    405 for a method an endpoint does not take, 400 for a body that is not JSON, 500 with
    a request id (the traceback goes to the replica's log), 404 naming what exists.
    """

    def __init__(self, entrypoint: str, prefix: str, max_multiplexing: int) -> None:
        from dashboard.sdk.loader import endpoints, load_app_class

        # The runtime_env's working_dir is the replica's working directory: the bundle.
        cls = load_app_class(Path.cwd(), entrypoint)
        self.prefix = prefix
        self.instance = cls()
        self.routes = endpoints(cls)
        self.pool = ThreadPoolExecutor(max(max_multiplexing, 1), thread_name_prefix="handler")
        self.instance.setup()
        print(f"setup() finished; serving {', '.join(sorted(self.routes)) or 'no endpoints'}")

    async def __call__(self, request: Any) -> Any:
        import inspect

        from starlette.responses import Response

        def error(status: int, code: str, message: str, **extra: Any) -> Response:
            body = {"error": {"code": code, "message": message, **extra}}
            return Response(json.dumps(body), status, media_type="application/json")

        path = request.url.path.removeprefix(self.prefix) or "/"
        if path == "/_health":
            return Response('{"status": "ok"}', media_type="application/json")
        found = self.routes.get(path)
        if found is None:
            known = ", ".join(sorted(self.routes)) or "no endpoints"
            return error(404, "endpoint_not_found", f"no endpoint {path}; this app serves {known}")
        method_name, methods = found
        if request.method not in methods:
            return error(405, "method_not_allowed", f"{path} accepts {', '.join(methods)}")
        if request.method == "GET":
            data: Any = dict(request.query_params)
        else:
            raw = await request.body()
            try:
                data = json.loads(raw) if raw.strip() else {}
            except ValueError as exc:
                return error(400, "bad_json", f"the request body is not valid JSON: {exc}")
        func = getattr(self.instance, method_name)
        args = (data,) if inspect.signature(func).parameters else ()
        try:
            if inspect.iscoroutinefunction(func):
                result = await func(*args)
            else:
                result = await asyncio.get_running_loop().run_in_executor(self.pool, func, *args)
            body = json.dumps(result)
        except Exception as exc:  # noqa: BLE001 - the app's bug is reported, not fatal.
            import uuid

            request_id = uuid.uuid4().hex
            sys.stderr.write(
                f"request {request_id}: {request.method} {path} raised\n"
                + "".join(traceback.format_exception(exc))
            )
            return error(
                500,
                "handler_error",
                "the app failed on this request; its log has the details under request id "
                + request_id,
                request_id=request_id,
            )
        return Response(body, media_type="application/json")

    def __del__(self) -> None:
        # Serve calls __del__ when it stops a replica gracefully: the app's teardown().
        with contextlib.suppress(Exception):
            self.instance.teardown()
