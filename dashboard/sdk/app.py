from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from dashboard.sdk.parameters import default

F = TypeVar("F", bound=Callable[..., Any])
ENDPOINT_ATTR = "__switchboard_endpoint__"


class App:
    """Base class of every deployable app.

    Settings are plain class attributes (see DESIGN.md section 3 for their meaning and
    ranges). A runner creates one instance, calls setup() once before serving, and
    teardown() once when it is stopped gracefully.
    """

    # The annotated attributes are the settings (loader.SETTING_NAMES), with the
    # catalogue's defaults (sdk/parameters.py).

    keep_alive: int = default("keep_alive")
    min_concurrency: int = default("min_concurrency")
    max_concurrency: int = default("max_concurrency")
    concurrency_buffer: int = default("concurrency_buffer")
    concurrency_buffer_perc: int = default("concurrency_buffer_perc")
    scaling_delay: int = default("scaling_delay")
    request_timeout: int = default("request_timeout")
    max_multiplexing: int = default("max_multiplexing")
    startup_timeout: int = default("startup_timeout")
    machine_type: str = default("machine_type")

    def setup(self) -> None:
        """Load models, open connections: anything every request needs. Runs once per runner."""

    def teardown(self) -> None:
        """Release what setup() took. Runs once when the runner stops gracefully."""


def endpoint(path: str, *, methods: tuple[str, ...] = ("GET", "POST")) -> Callable[[F], F]:
    """Expose a method at `path` under the app's gateway URL.

    The handler receives the request's JSON body (or its query parameters for a GET) as a
    dict, when it takes an argument, and returns anything JSON can encode. It may be a
    plain or an async function.
    """
    if not path.startswith("/"):
        raise ValueError(f"endpoint paths start with '/', got {path!r}")

    def mark(func: F) -> F:
        setattr(func, ENDPOINT_ATTR, (path, tuple(m.upper() for m in methods)))
        return func

    return mark
