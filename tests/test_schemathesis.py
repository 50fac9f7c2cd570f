"""Property-based API testing with accounts on: no 5xx, every response matches the documented
schema, and no operation the document secures works without credentials.

Every generated request is sent as a fixture user of its own, with ``Authorization: Bearer
TOKEN``. Nothing schemathesis generates can take that token away: ``DELETE
/auth/tokens/{token_id}`` is never sent with the run's own token id (it gets a spare token of the
same user instead), and ``POST /auth/logout`` ends only the session whose cookie a request carries,
which none of the run's requests do. So both stay in the run.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)
from schemathesis.specs.openapi.checks import ignored_auth

# No server error, no response outside what the document promises, and credentials enforced
# wherever the document requires them (ignored_auth resends a successful request without
# credentials and with made-up ones). Not positive_data_acceptance: a schema-valid but unknown
# pagination cursor is rightly a 400, a schema-valid username may be taken (409), and so on.
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    negative_data_rejection,
    unsupported_method,
    ignored_auth,
]


def _is_uuid(value: object) -> bool:
    try:
        return str(uuid.UUID(str(value))) == value
    except ValueError:
        return False


@dataclass
class Account:
    """The run's user, its token, and things of theirs for generated requests to hit."""

    client: httpx.Client  # signed in as the user (session cookie); the cases never use it
    token_id: str
    headers: dict[str, str]
    note_id: str
    friend: str  # another user, to share the note with

    def spare_token(self) -> str:
        response = self.client.post("/auth/tokens", json={"name": "spare"})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def fresh_note(self) -> str:
        response = self.client.post("/notes", json={"title": "doomed", "content": "x"})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def aim(self, case, known: bool) -> None:
        """Point the case's path at things that exist (when ``known``), so that the successful
        answers are exercised too and not only 404; and never at the run's own token."""
        parameters = case.path_parameters
        if not parameters:
            return
        if parameters.get("token_id") == self.token_id or (
                known and _is_uuid(parameters.get("token_id"))):
            parameters["token_id"] = self.spare_token()
        if not known:
            return
        if _is_uuid(parameters.get("note_id")):
            deleting = case.method.upper() == "DELETE" and case.path == "/notes/{note_id}"
            parameters["note_id"] = self.fresh_note() if deleting else self.note_id
        if "username" in parameters:
            parameters["username"] = self.friend


def _sign_up(client: httpx.Client, prefix: str) -> str:
    username = f"{prefix}-{uuid.uuid4().hex[:12]}"
    response = client.post("/auth/signup",
                           json={"username": username, "password": secrets.token_urlsafe(16)})
    assert response.status_code == 201, response.text
    return username


@pytest.fixture(scope="module")
def account(auth_server):
    with httpx.Client(base_url=auth_server.url, timeout=30) as client:
        with httpx.Client(base_url=auth_server.url, timeout=30) as other:
            friend = _sign_up(other, "st-friend")
        _sign_up(client, "schemathesis")
        token = client.post("/auth/tokens", json={"name": "schemathesis"})
        assert token.status_code == 201, token.text
        note = client.post("/notes", json={"title": "schemathesis", "content": "é😀"})
        assert note.status_code == 201, note.text
        yield Account(client=client, token_id=token.json()["id"],
                      headers={"Authorization": f"Bearer {token.json()['token']}"},
                      note_id=note.json()["id"], friend=friend)


@pytest.fixture(scope="module")
def api_schema(auth_server):
    return schemathesis.openapi.from_url(auth_server.url + "/docs/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@schema.given(known=st.booleans())
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
def test_api(case, known, auth_server, account):
    account.aim(case, known)
    case.call_and_validate(base_url=auth_server.url, headers=account.headers, checks=CHECKS,
                           timeout=30)


def test_the_run_kept_its_credentials(auth_server, account):
    """(After test_api.) Every case was sent with a token that still works."""
    response = httpx.get(auth_server.url + "/auth/me", headers=account.headers)
    assert response.status_code == 200, response.text


# Found by the run above (each was a 500 from PostgreSQL or argon2): text PostgreSQL cannot store
# (U+0000) or UTF-8 cannot encode (a lone surrogate, which JSON can spell) in the account fields.
UNSTORABLE_TEXT = [
    pytest.param("/auth/login", '{"username": "a\\u0000b", "password": "password123"}',
                 id="login-username-nul"),
    pytest.param("/auth/login", '{"username": "\\ud800", "password": "password123"}',
                 id="login-username-lone-surrogate"),
    pytest.param("/auth/login", '{"username": "someone", "password": "\\ud800password"}',
                 id="login-password-lone-surrogate"),
    pytest.param("/auth/signup", '{"username": "st-surrogate", "password": "\\ud800password"}',
                 id="signup-password-lone-surrogate"),
    pytest.param("/auth/tokens", '{"name": "a\\u0000b"}', id="token-name-nul"),
]


@pytest.mark.parametrize(("path", "body"), UNSTORABLE_TEXT)
def test_unstorable_text_is_a_client_error(auth_server, account, path, body):
    response = httpx.post(auth_server.url + path, content=body.encode(),
                          headers={**account.headers, "Content-Type": "application/json"})
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
