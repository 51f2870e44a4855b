from __future__ import annotations

import json
import re

import pytest
from django.urls import URLPattern, get_resolver

from dashboard.controlplane.api import urls as api_urls
from dashboard.controlplane.api.contract import document
from dashboard.controlplane.rules import MAX_PAGE_SIZE
from dashboard.webhooks import urls as webhook_urls
from tests.controlplane.conftest import ApiClient


def _openapi_path(pattern: URLPattern) -> str:
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", str(pattern.pattern))


@pytest.mark.django_db
def test_the_document_is_served_without_a_token_and_parses_as_openapi_3_1():
    response = ApiClient(None).get("openapi.json")
    assert response.status_code == 200
    doc = json.loads(response.content)
    assert doc["openapi"] == "3.1.0"
    assert doc["servers"] == [{"url": "/api/v1"}]


@pytest.mark.django_db
def test_every_url_route_and_method_is_in_the_document():
    doc = ApiClient(None).get("openapi.json").json()
    routes = [p for p in [*api_urls.urlpatterns, *webhook_urls.urlpatterns] if p.name]
    assert routes, "the API has routes"
    for route in routes:
        assert _openapi_path(route) in doc["paths"], route.pattern
    assert len(doc["paths"]) == len(routes)
    assert set(doc["paths"]["/apps/{app}/revisions"]) >= {"get", "post"}
    assert set(doc["paths"]["/apps/{app}/revisions/{rev}"]) >= {"get", "delete"}
    assert set(doc["paths"]["/apps/{app}"]) >= {"get"}


@pytest.mark.django_db
def test_every_reference_in_the_document_resolves():
    doc = ApiClient(None).get("openapi.json").json()
    refs = re.findall(r'"\$ref": "#/([^"]+)"', json.dumps(doc))
    for ref in refs:
        node = doc
        for part in ref.split("/"):
            node = node[part]
    assert refs


@pytest.mark.django_db
def test_the_apis_root_points_to_its_document():
    response = ApiClient(None).get("")
    assert response.status_code == 200
    assert response.json()["openapi"] == "http://testserver/api/v1/openapi.json"


def test_the_api_is_mounted_under_api_v1():
    assert get_resolver().resolve("/api/v1/me").func.__name__ == "me"


def test_the_value_sets_of_the_schemas_are_the_models_choices():
    from typing import get_args

    from dashboard.controlplane.api import schemas
    from dashboard.controlplane.models import (
        AuthMode,
        Network,
        OperationKind,
        OperationState,
        RevisionStatus,
        Role,
        Source,
    )
    from dashboard.webhooks.models import EventType

    for literal, choices in (
        (schemas.RevisionStatusValue, RevisionStatus),
        (schemas.OperationKindValue, OperationKind),
        (schemas.OperationStateValue, OperationState),
        (schemas.SourceValue, Source),
        (schemas.AuthModeValue, AuthMode),
        (schemas.NetworkValue, Network),
        (schemas.RoleValue, Role),
    ):
        assert list(get_args(literal)) == list(choices.values), choices
    doc = document()["components"]["schemas"]
    assert set(doc["WebhookEvent"]["enum"]) == set(EventType.values)


def test_the_document_says_what_the_code_sends_and_what_is_required():
    schemas = document()["components"]["schemas"]
    assert "ended_at" in schemas["Runner"]["required"]
    assert "revision" in schemas["RevisionAnswer"]["properties"]  # suspend, resume, pins
    assert "replayed" in schemas["OperationAnswer"]["properties"]
    assert {"id", "status", "current", "pinned"} <= set(schemas["Revision"]["required"])
    assert schemas["Revision"]["additionalProperties"] is False
    assert schemas["SetRevBody"]["required"] == ["revision"]
    assert schemas["PageQuery"]["properties"]["page_size"]["maximum"] == MAX_PAGE_SIZE


@pytest.mark.django_db
def test_a_body_outside_its_schema_is_a_400_naming_the_field(deployer, demo_app):
    response = deployer.post("apps/demo/rollout", {"force": "maybe", "reason": 7})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"] == "force must be true or false, got 'maybe'"
    assert [e["field"] for e in error["details"]["errors"]] == ["force", "reason"]
    assert not demo_app.operations.exists()
