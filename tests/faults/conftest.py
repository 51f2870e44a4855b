"""Fault tests: real processes, real outages. The CLI fixtures are the CLI suite's own, the
web server (granian, as `manage.py up` runs it) the dashboard suite's own."""

from tests.cli.conftest import sb  # noqa: F401 - a fixture, used by name.
from tests.web.conftest import web_server  # noqa: F401 - a fixture, used by name.
