"""The OpenAPI document and the offline docs page."""

from __future__ import annotations

import re

import httpx
import pytest
from openapi_spec_validator import validate

OPERATIONS = {
    ("/notes", "post"), ("/notes", "get"), ("/notes/{note_id}", "get"),
    ("/notes/{note_id}", "put"), ("/notes/{note_id}", "patch"), ("/notes/{note_id}", "delete"),
    ("/notes/{note_id}/edits", "post"), ("/health", "get"),
}


@pytest.fixture(scope="module")
def spec(server) -> dict:
    response = httpx.get(server.url + "/docs/openapi.json")
    assert response.status_code == 200
    return response.json()


def test_document_is_valid_openapi_3(spec):
    assert spec["openapi"].startswith("3.")
    validate(spec)


def test_every_route_is_documented(spec):
    documented = {(path, method) for path, item in spec["paths"].items() for method in item}
    assert documented == OPERATIONS


def resolve(spec: dict, schema: dict) -> dict:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    return spec["components"]["schemas"][ref.rsplit("/", 1)[-1]]


def test_operations_have_summaries_bodies_and_problem_responses(spec):
    for path, method in OPERATIONS:
        operation = spec["paths"][path][method]
        assert operation.get("summary"), (path, method)
        responses = operation["responses"]
        assert any(code.startswith("2") for code in responses), (path, method)
        problems = [code for code, response in responses.items() if code.startswith(("4", "5"))]
        assert problems, (path, method)
        for code in problems:
            assert "application/problem+json" in responses[code]["content"], (path, method, code)
        if method in {"post", "put", "patch"}:
            body = operation["requestBody"]
            schema = resolve(spec, body["content"]["application/json"]["schema"])
            assert "properties" in schema
            if (path, method) != ("/notes/{note_id}", "patch"):
                assert schema["required"], (path, method)
            assert {"415", "422"} <= responses.keys()


def test_problem_schema_is_rfc_9457(spec):
    problem = spec["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}


def test_docs_page_uses_only_local_assets(server):
    page = httpx.get(server.url + "/docs")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources
    for source in sources:
        assert source.startswith("/"), f"{source} is not served by the app"
        assert httpx.get(server.url + source).status_code == 200, source
    assert "swagger-ui-bundle.js" in page.text
    assert "/docs/protocol" in page.text


def test_protocol_document_is_served(server):
    response = httpx.get(server.url + "/docs/protocol")
    assert response.status_code == 200
    assert "Live editing protocol" in response.text
