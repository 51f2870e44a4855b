"""A real two-node Ray cluster on this machine, and the whole system running on it.

`ray_cluster` is the cluster (cluster.py): started once, shared by every test here, and
stopped, like this package's system, once they ran (they run first in a session). `system` is the suite's system fixture with
SWITCHBOARD_BACKEND=ray and RAY_ADDRESS set, so the runtime drives Ray Serve; the CLI's
`sb` fixtures and the browser's `page` (tests/browser) work on top of it unchanged.

Without the ray extra installed these tests skip with that reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The browser's fixtures (Chromium through Playwright), for the Runners page on Ray.
from tests.browser.conftest import browser, page  # noqa: F401
from tests.cli.conftest import sb, viewer  # noqa: F401 - the CLI fixtures, on the Ray system.
from tests.conftest import _stop, free_port
from tests.conftest import system as local_system
from tests.ray import cluster


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "loses_a_node: runs after the other Ray tests (it kills the second node)"
    )


def pytest_collection_modifyitems(config, items) -> None:
    here = Path(__file__).parent
    mine = [item for item in items if here in Path(item.fspath).parents]
    # Every other test here may count on both nodes.
    mine.sort(key=lambda item: item.get_closest_marker("loses_a_node") is not None)
    for item in mine:
        item.add_marker(pytest.mark.ray)
        item.add_marker(pytest.mark.system)
    # First in the session, and their system (package-scoped) stopped before the suite's
    # own starts: two systems at once would share the Celery broker of the test process,
    # each one's worker taking the other's operations to its own runtime.
    chosen = {id(item) for item in mine}
    items[:] = mine + [item for item in items if id(item) not in chosen]


@pytest.fixture(scope="package")
def ray_cluster():
    if not cluster.installed():
        pytest.skip("the ray extra is not installed: pip install -e '.[ray]'")
    with cluster.running_cluster() as started:
        yield started


@pytest.fixture(scope="package")
def ray_env(ray_cluster):
    """The runtime's environment for the Ray backend, set while the session's system starts."""
    values = {
        "SWITCHBOARD_BACKEND": "ray",
        "RAY_ADDRESS": ray_cluster.address,
        "SWITCHBOARD_RAY_SERVE_PORT": str(free_port()),
        "RAY_TMPDIR": str(ray_cluster.temp_dir),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    yield values
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="package")
def system(
    ray_env, django_db_setup, django_db_blocker, live_server, tmp_path_factory, redis_client
):
    """The suite's system, its runtime on the Ray backend (ray_env is set first)."""
    started = local_system.__wrapped__(
        django_db_setup, django_db_blocker, live_server, tmp_path_factory, redis_client
    )
    sys_ = next(started)
    first = sys_.runtime
    try:
        yield sys_
    finally:
        # A test that restarted the runtime left its new process here: stop that one too.
        if sys_.runtime is not first:
            _stop(sys_.runtime)
        started.close()
