"""Schemathesis against the live API (a server on 127.0.0.1, the suite's database): every
route of the generated document, called with an admin's token and generated input, valid
and hostile. No answer may be a 5xx, and every answer must be the one the document
describes for its route and status. Bounded: a few examples per route.

Run alone: `make test PYTEST_ARGS="tests/contract -q"`.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from dashboard.controlplane.api.contract import document
from dashboard.controlplane.models import ApiToken, App, Profile
from tests.conftest import free_port

# Examples, schemathesis's boundary cases (coverage) and fuzzing, valid and invalid input:
# about a minute over every route here. SCHEMATHESIS_COVERAGE=0 leaves the boundary cases out.
COVERAGE = os.environ.get("SCHEMATHESIS_COVERAGE", "1") != "0"
CONFIG = SchemathesisConfig.from_dict({"phases": {"coverage": {"enabled": COVERAGE}}})
schema = schemathesis.openapi.from_dict(document(), config=CONFIG)
# Where the runtime or the task queue is really down, a route answers a documented 503 that
# says so; any other 5xx is a bug.
HONEST_503 = {"runtime_unavailable", "runtime_error", "queue_unavailable"}


@schemathesis.check
def no_server_error_but_an_honest_503(ctx, response, case) -> bool | None:
    if response.status_code == 503:
        try:
            code = response.json()["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = None
        if code in HONEST_503:
            return True
    return not_a_server_error(ctx, response, case)


CHECKS = [
    no_server_error_but_an_honest_503,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture
def token(transactional_db, django_user_model, settings, tmp_path) -> str:
    # The runtime is really unreachable (nothing listens there), as in tests/controlplane.
    settings.VAR_DIR = tmp_path / "var"
    settings.VAR_DIR.mkdir()
    settings.RUNTIME_URL = f"http://127.0.0.1:{free_port()}"
    settings.HTTP_RETRIES = 0
    user = django_user_model.objects.create_user("fuzzer")
    Profile.objects.create(user=user, role="admin")
    App.objects.create(name="demo", owner=user)
    return ApiToken.issue(user, "schemathesis", "admin")[1]


@schema.parametrize()
@settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_the_live_api_answers_within_its_document(case, live_server, token):
    case.call_and_validate(
        base_url=live_server.url + "/api/v1",
        headers={"Authorization": f"Bearer {token}"},
        checks=CHECKS,
        timeout=30,
    )
