from __future__ import annotations

import json
import re

import pytest
from django.urls import URLPattern, get_resolver

from dashboard.controlplane.api import urls as api_urls
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
