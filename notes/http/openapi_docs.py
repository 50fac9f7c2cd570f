"""Small helpers to describe routes in the OpenAPI document, and the offline docs page."""

from __future__ import annotations

from http import HTTPStatus
from pathlib import Path
from typing import Any

import swagger_ui_bundle
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from sanic import Sanic
from sanic_ext.extensions.openapi import openapi
from sanic_ext.extensions.openapi.builders import SpecificationBuilder
from sanic_ext.extensions.openapi.definitions import Parameter, RequestBody, Response

from notes.http import schemas

DOCS_PAGE = Path(__file__).with_name("docs_page.html")
ASSETS_URI = "/docs/assets"
COMPONENTS = "#/components/schemas/{model}"
DOCUMENTED_MODELS = (
    schemas.NoteCreate, schemas.NoteReplace, schemas.NotePatch, schemas.EditRequest,
    schemas.NoteOut, schemas.NotePage, schemas.EditApplied, schemas.EditConflict,
    schemas.Health, schemas.Problem, schemas.Credentials, schemas.UserOut, schemas.AuthStatus,
    schemas.TokenCreate, schemas.TokenOut, schemas.TokenCreated, schemas.TokenList,
    schemas.ShareRequest, schemas.ShareOut, schemas.ShareList,
)


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"schema": {"$ref": COMPONENTS.format(model=model.__name__)}}


def json_body(model: type[BaseModel], description: str) -> RequestBody:
    return RequestBody({"application/json": _ref(model)}, description=description, required=True)


def ok(model: type[BaseModel] | None, status: int = 200, description: str | None = None,
       content_type: str = "application/json") -> Response:
    content = {content_type: _ref(model)} if model is not None else {}
    return Response(content, status=status, description=description or HTTPStatus(status).phrase)


def problems(*statuses: int) -> list[Response]:
    """Problem responses for these statuses, and 503 (the database does not answer)."""
    return [ok(schemas.Problem, status, content_type="application/problem+json")
            for status in sorted({*statuses, 503})]


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


def query(name: str, kind: type, description: str) -> Parameter:
    return Parameter(name, kind, location="query", description=description)


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


__all__ = ["openapi", "json_body", "ok", "problems", "header", "query", "configure_docs"]
