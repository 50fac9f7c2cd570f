"""Request bodies: JSON only, checked against a pydantic model."""

from __future__ import annotations

from pydantic import BaseModel, ValidationError
from sanic import Request

from notes.collab.json_input import BadJson, parse_json
from notes.http.problems import Problem


def parse_body(request: Request, model: type[BaseModel]) -> BaseModel:
    """JSON body -> model: 415 wrong content type, 400 malformed JSON, 422 wrong fields."""
    content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise Problem(415, "Send the body as application/json.", kind="unsupported-media-type")
    try:
        data = parse_json(request.body)
    except BadJson as error:
        raise Problem(400, f"The body is {error}.", kind="malformed-json") from None
    try:
        return model.model_validate(data)
    except ValidationError as error:
        errors = [
            {"loc": list(item["loc"]), "msg": item["msg"], "type": item["type"]}
            for item in error.errors(include_url=False, include_input=False)
        ]
        raise Problem(422, "The body does not match the schema.", kind="validation-error",
                      errors=errors) from None
