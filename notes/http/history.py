"""REST routes for version history and the trash. Each parses its input, calls one action of
``notes.history``, and shapes the response."""

from __future__ import annotations

import uuid

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty
from sanic.response import json as json_response
from sanic_ext.extensions.openapi.definitions import Parameter

from notes import history, use_cases
from notes.http.auth import account_of, author_of, authorize, not_found
from notes.http.bodies import parse_body
from notes.http.notes import PER_CALLER, note_response, page_limit, positive_query_int
from notes.http.openapi_docs import NOTE_ID, json_body, ok, openapi, problems, query
from notes.http.problems import Problem
from notes.http.schemas import (
    NoteOut,
    TrashPage,
    VersionDetail,
    VersionDiffOut,
    VersionLabel,
    VersionOut,
    VersionPage,
)
from notes.store.queries import StoredVersion

bp = Blueprint("history")

BIGINT_MAX = 2**63 - 1
VERSION_ID = Parameter("version_id", int, location="path", required=True,
                       description="The version's id (from the list of versions).")
LIMIT = Parameter("limit", openapi.Integer(minimum=1), location="query",
                  description="Items per page (default NOTES_PAGE_SIZE; larger values are capped "
                  "at NOTES_MAX_PAGE_SIZE).")
CURSOR = query("cursor", str, "The `next_cursor` of the previous page.")
NO_VERSION = "No such version of this note."
IN_TRASH = "No such note in your trash."


def _ctx(request: Request):
    return request.app.ctx


def version_json(version: StoredVersion, *, content: bool = False) -> dict:
    model = VersionDetail if content else VersionOut
    return model.model_validate(version, from_attributes=True).model_dump(mode="json")


def _version_id(raw: int) -> int:
    if not 1 <= raw <= BIGINT_MAX:
        raise Problem(404, NO_VERSION, kind="not-found")
    return raw


def _invalid_cursor(error: Exception) -> Problem:
    return Problem(400, str(error), kind="invalid-cursor")


def _page_limit(request: Request) -> int | None:
    args = request.get_args(keep_blank_values=True)
    return page_limit(args.get("limit"), _ctx(request).limits.max_page_size)


def _version_errors(error: LookupError) -> Problem:
    if isinstance(error, history.VersionNotFound):
        return Problem(404, NO_VERSION, kind="not-found")
    return not_found()


# --- versions --------------------------------------------------------------------------------


@bp.get("/notes/<note_id:uuid>/versions")
@openapi.definition(
    summary="List a note's versions",
    description="Newest first. A version is recorded by every save that changed the note "
    "(live edits are saved a few seconds after the typing stops), thinned as they age: all of "
    "the last hour, then one per 10 minutes for a day, one per hour for 30 days, one per day "
    "after. Named versions are kept forever.",
    parameter=[NOTE_ID, LIMIT, CURSOR],
    response=[ok(VersionPage), *problems(400, 422, note="read")],
    tag="history",
)
async def list_versions(request: Request, note_id: uuid.UUID) -> HTTPResponse:
    await authorize(request, note_id)
    ctx = _ctx(request)
    try:
        versions, next_cursor = await history.list_versions(
            ctx.store, ctx.limits, note_id, limit=_page_limit(request),
            cursor=request.args.get("cursor"))
    except use_cases.InvalidCursor as error:
        raise _invalid_cursor(error) from None
    except use_cases.NoteNotFound:
        raise not_found() from None
    body = {"items": [version_json(version) for version in versions], "next_cursor": next_cursor}
    return json_response(body, headers=PER_CALLER)


@bp.get("/notes/<note_id:uuid>/versions/<version_id:int>")
@openapi.definition(
    summary="Read one version of a note",
    parameter=[NOTE_ID, VERSION_ID],
    response=[ok(VersionDetail), *problems(note="read")],
    tag="history",
)
async def read_version(request: Request, note_id: uuid.UUID, version_id: int) -> HTTPResponse:
    await authorize(request, note_id)
    try:
        version = await history.read_version(_ctx(request).store, note_id,
                                             _version_id(version_id))
    except LookupError as error:
        raise _version_errors(error) from None
    return json_response(version_json(version, content=True), headers=PER_CALLER)


@bp.get("/notes/<note_id:uuid>/versions/<version_id:int>/diff")
@openapi.definition(
    summary="What changed since a version",
    description="The changes from this version to version `to`, or to the note's current "
    "(live) text: as a delta of the live protocol (code points) and as a unified diff.",
    parameter=[NOTE_ID, VERSION_ID,
               Parameter("to", openapi.Integer(minimum=1), location="query",
                         description="The version to compare with (default: the current "
                         "text).")],
    response=[ok(VersionDiffOut), *problems(422, note="read")],
    tag="history",
)
async def diff_version(request: Request, note_id: uuid.UUID, version_id: int) -> HTTPResponse:
    await authorize(request, note_id)
    raw_to = request.get_args(keep_blank_values=True).get("to")
    to = None if raw_to is None else positive_query_int(raw_to, "to", BIGINT_MAX, "a version id")
    ctx = _ctx(request)
    try:
        changes = await history.diff_version(ctx.store, ctx.hub, note_id,
                                             _version_id(version_id), to)
    except LookupError as error:
        raise _version_errors(error) from None
    body = {"from": changes.source.id, "to": changes.target,
            "title": {"from": changes.title_from, "to": changes.title_to},
            "delta": changes.delta, "unified": changes.unified}
    return json_response(body, headers=PER_CALLER)


@bp.post("/notes/<note_id:uuid>/versions")
@openapi.definition(
    summary="Name the current text as a version",
    description="Saves the note if it has unsaved live changes, then names its text: a named "
    "version is kept forever.",
    parameter=[NOTE_ID],
    body=json_body(VersionLabel, "The version's name."),
    response=[ok(VersionOut, 201, "Named."), *problems(400, 413, 415, 422, note="write")],
    tag="history",
)
async def name_version(request: Request, note_id: uuid.UUID) -> HTTPResponse:
    await authorize(request, note_id, write=True)
    body = parse_body(request, VersionLabel)
    ctx = _ctx(request)
    try:
        version = await history.name_version(ctx.store, ctx.hub, note_id, body.label,
                                             author=author_of(request))
    except use_cases.NoteNotFound:
        raise not_found() from None
    except use_cases.InvalidNote as error:
        raise Problem(422, "The name breaks a limit.", kind="validation-error",
                      errors=error.errors) from None
    return json_response(version_json(version), status=201, headers=PER_CALLER)


@bp.post("/notes/<note_id:uuid>/versions/<version_id:int>/restore")
@openapi.definition(
    summary="Restore a version",
    description="The note's title and content become the version's. On a note open for live "
    "editing this is a minimal diff applied live (editors see an `edit`, nobody reloads); the "
    "restored text is saved at once, as a new version.",
    parameter=[NOTE_ID, VERSION_ID],
    response=[ok(NoteOut), *problems(422, note="write")],
    tag="history",
)
async def restore_version(request: Request, note_id: uuid.UUID, version_id: int
                          ) -> HTTPResponse:
    role = await authorize(request, note_id, write=True)
    ctx = _ctx(request)
    try:
        note = await history.restore_version(ctx.store, ctx.hub, ctx.limits, note_id,
                                             _version_id(version_id),
                                             author=author_of(request), role=role)
    except LookupError as error:
        raise _version_errors(error) from None
    except use_cases.InvalidNote as error:
        raise Problem(422, "The version breaks a limit now in force.", kind="validation-error",
                      errors=error.errors) from None
    return note_response(note)


# --- the trash -------------------------------------------------------------------------------


def _trash_owner(request: Request) -> uuid.UUID | None:
    """Whose trash: the signed-in user's (None: everyone's, accounts off)."""
    user = account_of(request)
    return None if user is None else user.id


@bp.get("/trash")
@openapi.definition(
    summary="List my trashed notes",
    description="The notes you deleted, the most recently deleted first. Each is deleted for "
    "good at `purge_at`.",
    parameter=[LIMIT, CURSOR],
    response=[ok(TrashPage), *problems(400, (403, "A share link cannot see a trash."), 422)],
    tag="trash",
)
async def list_trash(request: Request) -> HTTPResponse:
    ctx = _ctx(request)
    owner_id = _trash_owner(request)
    try:
        entries, next_cursor = await history.list_trash(
            ctx.store, ctx.limits, owner_id=owner_id, limit=_page_limit(request),
            cursor=request.args.get("cursor"), trash_days=ctx.settings.trash_days)
    except use_cases.InvalidCursor as error:
        raise _invalid_cursor(error) from None
    items = [{"id": str(entry.note.id), "title": entry.note.title,
              "created_at": entry.note.created_at.isoformat(),
              "updated_at": entry.note.updated_at.isoformat(),
              "deleted_at": entry.note.deleted_at.isoformat(),
              "purge_at": entry.purge_at.isoformat()} for entry in entries]
    return json_response({"items": items, "next_cursor": next_cursor}, headers=PER_CALLER)


@bp.post("/trash/<note_id:uuid>/restore")
@openapi.definition(
    summary="Restore a trashed note",
    description="The note comes back with its history, shares and links.",
    parameter=[NOTE_ID],
    response=[ok(NoteOut), *problems((403, "A share link cannot see a trash."),
                                     (404, IN_TRASH))],
    tag="trash",
)
async def restore_from_trash(request: Request, note_id: uuid.UUID) -> HTTPResponse:
    ctx = _ctx(request)
    try:
        note = await history.restore_from_trash(ctx.store, note_id,
                                                owner_id=_trash_owner(request))
    except use_cases.NoteNotFound:
        raise Problem(404, IN_TRASH, kind="not-found") from None
    return note_response(note)


@bp.delete("/trash/<note_id:uuid>")
@openapi.definition(
    summary="Delete a trashed note for good",
    description="With its history, shares and links. This cannot be undone.",
    parameter=[NOTE_ID],
    response=[ok(None, 204, "Deleted for good."),
              *problems((403, "A share link cannot see a trash."), (404, IN_TRASH))],
    tag="trash",
)
async def delete_forever(request: Request, note_id: uuid.UUID) -> HTTPResponse:
    try:
        await history.delete_forever(_ctx(request).store, note_id,
                                     owner_id=_trash_owner(request))
    except use_cases.NoteNotFound:
        raise Problem(404, IN_TRASH, kind="not-found") from None
    return empty(204)
