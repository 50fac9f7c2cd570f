"""The OpenAPI document and the offline docs page (on a server with accounts on, the default)."""

from __future__ import annotations

import json
import re
import uuid

import httpx
import pytest
from openapi_spec_validator import validate
from sanic import Sanic
from sanic.response import empty
from sanic_ext.extensions.openapi.builders import OperationStore

from notes.http.openapi_docs import secure_operations

OPERATIONS = {
    ("/notes", "post"), ("/notes", "get"), ("/notes/{note_id}", "get"),
    ("/notes/{note_id}", "put"), ("/notes/{note_id}", "patch"), ("/notes/{note_id}", "delete"),
    ("/notes/{note_id}/edits", "post"), ("/health", "get"),
    ("/auth/status", "get"), ("/auth/signup", "post"), ("/auth/login", "post"),
    ("/auth/logout", "post"), ("/auth/me", "get"), ("/auth/tokens", "post"),
    ("/auth/tokens", "get"), ("/auth/tokens/{token_id}", "delete"),
    ("/notes/{note_id}/shares", "get"), ("/notes/{note_id}/shares/{username}", "put"),
    ("/notes/{note_id}/shares/{username}", "delete"), ("/notes/{note_id}/links", "post"),
    ("/notes/{note_id}/links", "get"), ("/notes/{note_id}/links/{link_id}", "delete"),
    ("/notes/{note_id}/versions", "get"), ("/notes/{note_id}/versions", "post"),
    ("/notes/{note_id}/versions/{version_id}", "get"),
    ("/notes/{note_id}/versions/{version_id}/diff", "get"),
    ("/notes/{note_id}/versions/{version_id}/restore", "post"), ("/trash", "get"),
    ("/trash/{note_id}/restore", "post"), ("/trash/{note_id}", "delete"), ("/export", "get"),
}
# The routes registered with ``ctx_public=True`` that the document describes (``/`` and
# ``/docs/protocol`` are public too, but pages, not API operations).
PUBLIC = {
    ("/health", "get"), ("/auth/status", "get"), ("/auth/signup", "post"),
    ("/auth/login", "post"), ("/auth/logout", "post"),
}
# Where a caller who sees the note can still lack the role for the operation.
ROLE_CHECKED = {
    ("/notes/{note_id}", "put"), ("/notes/{note_id}", "patch"), ("/notes/{note_id}", "delete"),
    ("/notes/{note_id}/edits", "post"), ("/notes/{note_id}/shares/{username}", "put"),
    ("/notes/{note_id}/shares/{username}", "delete"), ("/notes/{note_id}/links", "post"),
    ("/notes/{note_id}/links", "get"), ("/notes/{note_id}/links/{link_id}", "delete"),
    ("/notes/{note_id}/versions", "post"), ("/notes/{note_id}/versions/{version_id}/restore",
                                            "post"),
}
WITHOUT_BODY = {("/auth/logout", "post"),
                ("/notes/{note_id}/versions/{version_id}/restore", "post"),
                ("/trash/{note_id}/restore", "post")}
BEARER, COOKIE = "bearerAuth", "cookieAuth"


@pytest.fixture(scope="module")
def spec(auth_server) -> dict:
    response = httpx.get(auth_server.url + "/docs/openapi.json")  # no credentials: public
    assert response.status_code == 200
    return response.json()


def operations(spec: dict):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_document_is_valid_openapi_3(spec):
    assert spec["openapi"].startswith("3.")
    validate(spec)


def test_every_route_is_documented(spec):
    documented = {(path, method) for path, method, _ in operations(spec)}
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
        if method in {"post", "put", "patch"} and (path, method) not in WITHOUT_BODY:
            body = operation["requestBody"]
            schema = resolve(spec, body["content"]["application/json"]["schema"])
            assert "properties" in schema
            if (path, method) != ("/notes/{note_id}", "patch"):
                assert schema["required"], (path, method)
            assert {"415", "422"} <= responses.keys()


def test_problem_schema_is_rfc_9457(spec):
    problem = spec["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}


# --- credentials ----------------------------------------------------------------------------------


def test_both_security_schemes_are_declared(spec):
    schemes = spec["components"]["securitySchemes"]
    assert schemes[BEARER]["type"] == "http"
    assert schemes[BEARER]["scheme"] == "bearer"
    assert schemes[COOKIE] == {**schemes[COOKIE], "type": "apiKey", "in": "cookie",
                               "name": "notes_session"}
    # Either one, by default for every operation.
    assert spec["security"] == [{BEARER: []}, {COOKIE: []}]


def test_public_operations_declare_no_security(spec):
    for path, method, operation in operations(spec):
        if (path, method) in PUBLIC:
            assert operation["security"] == [], (path, method)


def test_every_other_operation_needs_credentials_and_answers_401(spec):
    secured = [(path, method, operation) for path, method, operation in operations(spec)
               if (path, method) not in PUBLIC]
    assert {(path, method) for path, method, _ in secured} == OPERATIONS - PUBLIC
    for path, method, operation in secured:
        # The document's default (either credential) applies: no override, or not an empty one.
        assert operation.get("security", spec["security"]), (path, method)
        unauthorized = operation["responses"]["401"]
        assert "application/problem+json" in unauthorized["content"], (path, method)
        assert unauthorized["headers"]["WWW-Authenticate"]["required"] is True, (path, method)


def test_note_operations_answer_404_and_403_where_the_role_counts(spec):
    for path, method, operation in operations(spec):
        responses = operation["responses"]
        if "{note_id}" in path:
            assert "404" in responses, (path, method)
        if (path, method) in ROLE_CHECKED:
            assert "403" in responses, (path, method)
        if method != "get":  # a cross-site request may change nothing
            assert "403" in responses, (path, method)


def _example_request(client: httpx.Client, spec: dict, path: str, method: str) -> httpx.Request:
    values = {"note_id": str(uuid.uuid4()), "token_id": str(uuid.uuid4()),
              "link_id": str(uuid.uuid4()), "username": "nobody", "version_id": "1"}
    url = re.sub(r"\{(\w+)\}", lambda match: values[match[1]], path)
    body = {} if "requestBody" in spec["paths"][path][method] else None
    return client.build_request(method.upper(), url, json=body)


def test_the_document_says_what_the_server_does(spec, auth_server):
    """Without credentials, every secured operation answers 401 with the challenge, and no
    public one does (whatever else it answers to an empty body)."""
    with httpx.Client(base_url=auth_server.url, timeout=30) as client:
        for path, method, _ in operations(spec):
            response = client.send(_example_request(client, spec, path, method))
            if (path, method) in PUBLIC:
                assert response.status_code != 401, (path, method, response.text)
            else:
                assert response.status_code == 401, (path, method, response.text)
                assert response.headers["WWW-Authenticate"].startswith("Bearer"), (path, method)


# --- the docs page --------------------------------------------------------------------------------


def test_docs_page_uses_only_local_assets(auth_server):
    page = httpx.get(auth_server.url + "/docs")  # no credentials: the page and assets are public
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources
    for source in sources:
        assert source.startswith("/"), f"{source} is not served by the app"
        assert httpx.get(auth_server.url + source).status_code == 200, source
    assert not re.findall(r"\bhttps?://", page.text), "the page must work offline"
    assert "swagger-ui-bundle.js" in page.text
    assert "/docs/protocol" in page.text


def test_docs_page_can_send_credentials(auth_server):
    """The Authorize button (shown since the document declares securitySchemes) keeps the token
    across reloads; a session cookie goes along by itself (same origin)."""
    page = httpx.get(auth_server.url + "/docs").text
    assert re.search(r"persistAuthorization:\s*true", page)
    assert "POST /auth/tokens" in page  # where the token comes from


def test_protocol_document_is_served(auth_server):
    response = httpx.get(auth_server.url + "/docs/protocol")
    assert response.status_code == 200
    assert "Live editing protocol" in response.text


def test_a_new_route_is_secured_by_default():
    """Undecorated, a route needs credentials in the document as in the middleware; with
    ``ctx_public=True`` it says ``security: []``."""
    app = Sanic(f"secured-by-default-{uuid.uuid4().hex[:8]}")

    @app.get("/new")
    async def new(request):
        return empty()

    @app.post("/open", ctx_public=True)
    async def open_route(request):
        return empty()

    secure_operations(app)
    store = OperationStore()

    def document(handler) -> dict:  # as the JSON document has it (status codes as strings)
        return json.loads(json.dumps(store[handler].build().serialize()))

    secured = document(new)
    assert "security" not in secured  # the document's default: either credential
    assert secured["responses"]["401"]["headers"]["WWW-Authenticate"]["required"] is True
    public = document(open_route)
    assert public["security"] == []
    assert "401" not in public["responses"]
    assert "403" in public["responses"]  # a cross-site request changes nothing
