from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
ENDPOINT_ATTR = "__switchboard_endpoint__"


class App:
    """Base class of every deployable app.

    Settings are plain class attributes (see DESIGN.md section 3 for their meaning and
    ranges). A runner creates one instance, calls setup() once before serving, and
    teardown() once when it is stopped gracefully.
    """

    # The annotated attributes are the settings (loader.SETTING_NAMES). Their defaults are
    # the control plane's catalogue (controlplane/parameters.py), which the SDK cannot
    # import (it imports no Django): tests/properties/test_parameter_catalogue.py ties them.

    keep_alive: int = 10
    min_concurrency: int = 0
    max_concurrency: int = 2
    concurrency_buffer: int = 0
    concurrency_buffer_perc: int = 0
    scaling_delay: int = 0
    request_timeout: int = 3600
    max_multiplexing: int = 1
    startup_timeout: int = 600
    machine_type: str = "XS"

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
