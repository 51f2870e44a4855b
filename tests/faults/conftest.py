"""Fault tests: real processes, real outages. The CLI fixtures are the CLI suite's own."""

from tests.cli.conftest import sb  # noqa: F401 - a fixture, used by name.
