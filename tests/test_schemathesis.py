"""Property-based API testing: no 5xx, and every response matches the documented schema."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

# No server error, and no response outside what the document promises. (Not
# positive_data_acceptance: a schema-valid but unknown pagination cursor is rightly a 400.)
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    negative_data_rejection,
    unsupported_method,
]


@pytest.fixture(scope="module")
def api_schema(server):
    return schemathesis.openapi.from_url(server.url + "/docs/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture(scope="module")
def existing_note(server) -> str:
    response = httpx.post(server.url + "/notes", json={"title": "schemathesis", "content": "é😀"})
    return response.json()["id"]


@schema.parametrize()
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
def test_api(case, server):
    response = case.call(base_url=server.url, timeout=30)
    case.validate_response(response, checks=CHECKS)
