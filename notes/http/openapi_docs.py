"""Small helpers to describe routes in the OpenAPI document, and the offline docs page.

Security is described once, here, from the routes themselves (``secure_operations``): the
document declares both credentials (a bearer token, the session cookie) and requires either
everywhere; an operation whose route is public (``ctx_public=True``, as the credentials
middleware reads it) says ``security: []``; every other one answers 401. A new route is thus
secured in the document by default, as it is in the middleware.
"""

from __future__ import annotations

import uuid
from http import HTTPStatus
from pathlib import Path
from typing import Any

import swagger_ui_bundle
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from sanic import Sanic
from sanic_ext.extensions.openapi import openapi
from sanic_ext.extensions.openapi.builders import OperationStore, SpecificationBuilder
from sanic_ext.extensions.openapi.definitions import (
    MediaType,
    Parameter,
    RequestBody,
    Response,
)

from notes.http import schemas
from notes.http.public import SAFE_METHODS, SESSION_COOKIE, is_public

DOCS_PAGE = Path(__file__).with_name("docs_page.html")
ASSETS_URI = "/docs/assets"
COMPONENTS = "#/components/schemas/{model}"
BEARER_SCHEME = "bearerAuth"
COOKIE_SCHEME = "cookieAuth"
DOCUMENTED_MODELS = (
    schemas.NoteCreate, schemas.NoteReplace, schemas.NotePatch, schemas.EditRequest,
    schemas.NoteOut, schemas.NotePage, schemas.EditApplied, schemas.EditConflict,
    schemas.Health, schemas.Problem, schemas.Credentials, schemas.UserOut, schemas.AuthStatus,
    schemas.TokenCreate, schemas.TokenOut, schemas.TokenCreated, schemas.TokenList,
    schemas.ShareRequest, schemas.ShareOut, schemas.ShareList, schemas.LinkCreate,
    schemas.LinkOut, schemas.LinkCreated, schemas.LinkList, schemas.VersionOut,
    schemas.VersionDetail, schemas.VersionPage, schemas.VersionLabel, schemas.VersionDiffOut,
    schemas.TrashedNoteOut, schemas.TrashPage,
)


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"schema": {"$ref": COMPONENTS.format(model=model.__name__)}}


def json_body(model: type[BaseModel], description: str) -> RequestBody:
    return RequestBody({"application/json": _ref(model)}, description=description, required=True)


def ok(model: type[BaseModel] | None, status: int = 200, description: str | None = None,
       content_type: str = "application/json") -> Response:
    content = {content_type: _ref(model)} if model is not None else {}
    return Response(content, status=status, description=description or HTTPStatus(status).phrase)


def problem(status: int, description: str | None = None) -> Response:
    """One problem+json response, with a description of when it happens."""
    return ok(schemas.Problem, status, description, content_type="application/problem+json")


CROSS_SITE = "the request came from a page of another site (nothing may change that way)"
CROSS_SITE_ONLY = "The request came from a page of another site: nothing may change that way."
TOO_MANY_WRITES = ("More writes than `NOTES_REST_WRITE_RATE` a second (beyond a burst of "
                   "`NOTES_REST_WRITE_BURST`): nothing changed; wait `Retry-After` seconds.")
NOT_YOURS = "No such note, or not one you may read (whether it exists is not revealed)."
# What ``authorize(request, note_id, write=..., manage=...)`` answers, by the access it checks.
NOTE_PROBLEMS = {
    "read": {404: NOT_YOURS},
    "write": {403: f"Your role on the note is viewer: you may read it, not change it; or "
                   f"{CROSS_SITE}.", 404: NOT_YOURS},
    "manage": {403: f"Only the note's owner may do this; or {CROSS_SITE}.", 404: NOT_YOURS},
}


def problems(*statuses: int | tuple[int, str], note: str | None = None) -> list[Response]:
    """Problem responses for these statuses (a ``(status, description)`` pair says when it
    happens), and 503 (the database does not answer).

    ``note="read" | "write" | "manage"``: the operation is on a note and needs that access, so
    it answers 404 when the note is not the caller's to see, and 403 when the caller's role is
    not enough. 401 is not listed here: ``secure_operations`` adds it to every operation that
    needs credentials (and a cross-site 403 to every state-changing one)."""
    if note is not None and note not in NOTE_PROBLEMS:
        raise ValueError(f"note={note!r}: one of {sorted(NOTE_PROBLEMS)}")
    described: dict[int, str | None] = {503: None, **NOTE_PROBLEMS.get(note or "", {})}
    for status in statuses:
        if isinstance(status, tuple):
            described[status[0]] = status[1]
        else:
            described.setdefault(status, None)
    return [problem(status, described[status]) for status in sorted(described)]


def openapi30(schema: Any) -> Any:
    """pydantic's JSON Schema in the OpenAPI 3.0 dialect: ``nullable``, no ``null`` type."""
    if isinstance(schema, list):
        return [openapi30(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    schema = {key: openapi30(value) for key, value in schema.items()}
    options = schema.get("anyOf")
    if options and {"type": "null"} in options:
        rest = [option for option in options if option != {"type": "null"}]
        del schema["anyOf"]
        if len(rest) == 1 and "$ref" not in rest[0]:
            schema.update(rest[0])
        else:
            schema["anyOf" if len(rest) > 1 else "allOf"] = rest
        schema["nullable"] = True
        if schema.get("default", 0) is None:
            del schema["default"]
    if "default" in schema and schema["default"] is None and not schema.get("nullable"):
        del schema["default"]
    if schema.get("type") == "integer" and "format" not in schema:
        schema["format"] = "int64"
    return schema


def register_schemas() -> None:
    """Put every request/response model under ``components.schemas`` of the OpenAPI document."""
    _, definitions = models_json_schema(
        [(model, "validation") for model in DOCUMENTED_MODELS], ref_template=COMPONENTS
    )
    builder = SpecificationBuilder()
    for name, schema in definitions["$defs"].items():
        builder.add_component("schemas", name, openapi30(schema))


def header(name: str, description: str) -> Parameter:
    return Parameter(name, str, location="header", description=description)


NOTE_ID = Parameter("note_id", uuid.UUID, location="path", required=True,
                    description="The note's id.")


def query(name: str, kind: type, description: str) -> Parameter:
    return Parameter(name, kind, location="query", description=description)


# --- security -------------------------------------------------------------------------------------


class _NoSecurity(list):
    """``security: []`` on an operation (no credentials needed, whatever the document's default).
    sanic-ext leaves out the empty fields of an operation when it builds one, so this empty list
    counts as set."""

    def __bool__(self) -> bool:
        return True


class _ProblemResponse(Response):
    """A problem response that also documents response headers (sanic-ext's has no field)."""

    headers: dict[str, Any]


UNAUTHORIZED_HEADERS = {"WWW-Authenticate": {
    "description": "`Bearer realm=\"notes\"`, with `error=\"invalid_token\"` when the credentials "
                   "sent are wrong, deleted or expired.",
    "required": True, "schema": {"type": "string"},
}}
UNAUTHORIZED = ("No valid credentials: send `Authorization: Bearer TOKEN` (from `POST "
                "/auth/tokens`) or the session cookie of `POST /auth/login`.")


def _unauthorized(description: str) -> _ProblemResponse:
    """401 as the credentials middleware answers it: problem+json and ``WWW-Authenticate``."""
    return _ProblemResponse(MediaType.all(problem(401).fields["content"]), status=401,
                            description=description, headers=UNAUTHORIZED_HEADERS)


def declare_security_schemes(cookie_name: str) -> None:
    """Both credentials under ``components.securitySchemes``, and either one required by default."""
    builder = SpecificationBuilder()
    builder.add_security_scheme(
        BEARER_SCHEME, "http", scheme="bearer",
        description="An API token: `Authorization: Bearer TOKEN`. Create one with `POST "
        "/auth/tokens` (signed in); it is shown only then. On a websocket, `?token=TOKEN`.")
    builder.add_security_scheme(
        COOKIE_SCHEME, "apiKey", location="cookie", name=cookie_name,
        description="The session cookie that `POST /auth/signup` and `POST /auth/login` set "
        "(HttpOnly: a browser sends it by itself, e.g. on this page once signed in on `/`).")
    declared = {requirement.fields["name"] for requirement in builder.security}
    for scheme in (BEARER_SCHEME, COOKIE_SCHEME):
        if scheme not in declared:  # create_app may run more than once in a process
            builder.secured(scheme)


def _operations(route: Any) -> list[tuple[str, Any]]:
    """(method, the builder of the operation sanic-ext documents) of a route, found the way
    sanic-ext finds them."""
    store = OperationStore()
    found = []
    for method in sorted(route.methods):
        handler = route.handler
        if hasattr(handler, "view_class"):
            handler = getattr(handler.view_class, method.lower(), None)
            if handler is None:
                continue
        function = getattr(handler, "__func__", None)
        if handler not in store and function is not None and function in store:
            handler = function
        found.append((method, store[handler]))
    return found


def secure_operations(app: Sanic) -> None:
    """Describe each documented route's credentials as the middleware applies them: a public
    route's operation gets ``security: []``, any other one the 401 answer; a state-changing one
    may also answer 403 to a cross-site request and 429 past the write rate (before_server_start,
    once the routes exist)."""
    for route in app.router.routes:
        if getattr(route.extra, "static", False):
            continue
        public = is_public(route, f"/{route.path}")
        for method, operation in _operations(route):
            if operation._exclude:
                continue
            responses = operation.responses
            if public:
                operation.security = _NoSecurity()
            if not public or 401 in responses:
                declared = responses.get(401)
                responses[401] = _unauthorized(
                    declared.fields["description"] if declared else UNAUTHORIZED)
            if method not in SAFE_METHODS and 403 not in responses:
                operation.response(403, problem(403).fields["content"], CROSS_SITE_ONLY)
            if method not in SAFE_METHODS and 429 not in responses:
                operation.response(429, problem(429).fields["content"], TOO_MANY_WRITES)
            operation.responses = dict(sorted(responses.items(), key=lambda item: str(item[0])))


def configure_docs(app: Sanic) -> None:
    """Serve the Swagger UI from the swagger-ui-bundle wheel: the docs page works offline."""
    app.config.OAS_UI_REDOC = False
    app.config.OAS_UI_SWAGGER = True
    app.config.OAS_UI_DEFAULT = "swagger"
    app.config.OAS_PATH_TO_SWAGGER_HTML = str(DOCS_PAGE)
    app.config.OAS_UI_SWAGGER_CDN_URL = ASSETS_URI
    app.config.OAS_UI_SWAGGER_VERSION = ""
    app.config.OAS_UI_SWAGGER_OAUTH2_REDIRECT = "/docs/oauth2-redirect.html"
    app.config.OAS_URI_TO_SWAGGER = "/swagger"
    app.static(ASSETS_URI, swagger_ui_bundle.swagger_ui_path, name="docs_assets")
    register_schemas()
    declare_security_schemes(SESSION_COOKIE)
    app.before_server_start(secure_operations)


__all__ = ["openapi", "json_body", "ok", "problem", "problems", "header", "query",
           "configure_docs"]
