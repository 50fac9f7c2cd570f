"""Request and response bodies of the REST API (pydantic models, also the OpenAPI schemas)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class NoteCreate(_Strict):
    title: str = Field(description="The note's title.")
    content: str = Field(default="", description="The note's text.")


class NoteReplace(_Strict):
    title: str
    content: str


class NotePatch(_Strict):
    title: str | None = None
    content: str | None = None


class EditRequest(_Strict):
    rev: int = Field(ge=0, description="The revision the delta was made on.")
    delta: list[dict[str, Any]] = Field(
        description='Operations {"retain": n}, {"insert": "text"}, {"delete": n}, in code points.'
    )


class NoteOut(BaseModel):
    id: uuid.UUID
    title: str
    content: str
    rev: int = Field(description="The live-editing revision of the content.")
    version: int = Field(description="Changes whenever the stored note changes.")
    created_at: datetime
    updated_at: datetime


class NotePage(BaseModel):
    items: list[NoteOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at the end.")


class EditApplied(BaseModel):
    rev: int
    delta: list[dict[str, Any]] = Field(description="The delta as applied (after transformation).")


class EditConflict(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    rev: int
    content: str


class Health(BaseModel):
    status: str
    database: str


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None
