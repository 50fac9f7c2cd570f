"""REST routes for notes. Each parses its input, calls one use case, and shapes the response."""

from __future__ import annotations

import uuid
from urllib.parse import quote

from pydantic import BaseModel
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, raw
from sanic.response import json as json_response
from sanic_ext.extensions.openapi.definitions import Parameter, Response

from notes import use_cases
from notes.collab.document import EditRejected
from notes.collab.text import text_problem
from notes.http.auth import (
    account_of,
    author_of,
    authorize,
    not_found,
    prefetched_note,
    read_access,
)
from notes.http.bodies import parse_body
from notes.http.openapi_docs import NOTE_ID, header, json_body, ok, openapi, problems, query
from notes.http.problems import Problem
from notes.http.schemas import (
    EditApplied,
    EditConflict,
    EditRequest,
    NoteCreate,
    NoteOut,
    NotePage,
    NotePatch,
    NoteReplace,
)
from notes.store.queries import StoredNote
from notes.transfer import download_name

bp = Blueprint("notes")

IF_MATCH = header("If-Match", "Apply only if the note's current ETag is one of these (or `*`).")
IF_NONE_MATCH = header("If-None-Match", "Answer 304 if the note's ETag is one of these.")


# A note's representation depends on who asks (their role, which notes a listing holds): shared
# caches must not keep it, and every cache must ask again.
PER_CALLER = {"Cache-Control": "private, no-cache", "Vary": "Authorization, Cookie"}


def note_json(note: StoredNote) -> dict:
    """A note as the API shows it, ``NoteOut``'s JSON form once encoded (``notes.http.encoding``
    writes the timestamps as pydantic does), built directly: validating a model to dump it
    again cost a GET as much as its database read. The tests hold the two equal."""
    return {"id": str(note.id), "title": note.title, "content": note.content, "rev": note.rev,
            "epoch": note.epoch, "version": note.version, "created_at": note.created_at,
            "updated_at": note.updated_at, "owner": note.owner, "role": note.role}


def note_response(note: StoredNote, status: int = 200, headers: dict | None = None,
                  etag: str | None = None) -> HTTPResponse:
    headers = {
        "ETag": etag or use_cases.etag_of(note.title, note.content, note.role),
        **PER_CALLER,
        **(headers or {}),
    }
    return json_response(note_json(note), status=status, headers=headers)


def _ctx(request: Request):
    return request.app.ctx


def _invalid(error: use_cases.InvalidNote) -> Problem:
    return Problem(422, "The note breaks a limit.", kind="validation-error", errors=error.errors)


@bp.post("/notes")
@openapi.definition(
    summary="Create a note",
    body=json_body(NoteCreate, "The new note's title and content."),
    response=[ok(NoteOut, 201, "Created; `Location` and `ETag` headers are set."),
              *problems(400, 413, 415, 422)],
    tag="notes",
)
async def create_note(request: Request) -> HTTPResponse:
    body = parse_body(request, NoteCreate)
    ctx = _ctx(request)
    owner = account_of(request)
    try:
        note = await use_cases.create_note(ctx.store, ctx.limits, body.title, body.content,
                                           owner=owner)
    except use_cases.InvalidNote as error:
        raise _invalid(error) from None
    return note_response(note, 201, {"Location": f"/notes/{note.id}"})


@bp.get("/notes")
@openapi.definition(
    summary="List and search notes",
    description="Newest-updated first, paginated by `next_cursor`. `q` is a PostgreSQL "
    "full-text search (web search syntax) over title and content.",
    parameter=[
        query("q", str, "Full-text search terms."),
        Parameter("limit", openapi.Integer(minimum=1), location="query",
                  description="Notes per page (default NOTES_PAGE_SIZE; larger values are "
                  "capped at NOTES_MAX_PAGE_SIZE)."),
        query("cursor", str, "The `next_cursor` of the previous page."),
    ],
    response=[ok(NotePage), *problems(400, 422)],
    tag="notes",
)
async def list_notes(request: Request) -> HTTPResponse:
    ctx = _ctx(request)
    args = request.get_args(keep_blank_values=True)
    limit = page_limit(args.get("limit"), ctx.limits.max_page_size)
    search = request.args.get("q")
    if search and text_problem(search):
        raise Problem(422, f"`q`: {text_problem(search)}.", kind="validation-error",
                      errors=[{"loc": ["query", "q"], "msg": text_problem(search),
                               "type": "invalid_text"}])
    try:
        notes, next_cursor = await use_cases.list_notes(
            ctx.store, ctx.hub, ctx.limits, query=search, limit=limit,
            cursor=request.args.get("cursor"), reader=_reader(request),
        )
    except use_cases.InvalidCursor as error:
        raise Problem(400, str(error), kind="invalid-cursor") from None
    body = {"items": [note_json(note) for note in notes], "next_cursor": next_cursor}
    return json_response(body, headers=PER_CALLER)


def _reader(request: Request) -> uuid.UUID | None:
    """Whose notes a listing shows (None: everyone's, accounts are off)."""
    user = account_of(request)
    return None if user is None else user.id


INT32_MAX = 2**31 - 1


def positive_query_int(raw: str, name: str, maximum: int, what: str) -> int:
    """The query parameter ``name`` as an integer from 1 to ``maximum``: else 422, saying it
    must be ``what``."""
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= maximum:
        raise Problem(422, f"`{name}` must be {what}.", kind="validation-error",
                      errors=[{"loc": ["query", name], "msg": what, "type": "range"}])
    return value


def page_limit(raw: str | None, maximum: int) -> int | None:
    if raw is None:
        return None
    return min(positive_query_int(raw, "limit", INT32_MAX, "a positive 32-bit integer"),
               maximum)


# What ``GET /notes/{id}`` can answer: the note as JSON (the default), or its content itself.
JSON_TYPE = "application/json"
DOWNLOADS = {"text/markdown": ".md", "text/plain": ".txt"}


def _wanted_type(request: Request) -> str:
    """The best of JSON, Markdown and plain text for the request's ``Accept`` (JSON when it
    accepts none of them: the API's default)."""
    if not request.headers.get("accept"):
        return JSON_TYPE
    match = request.accept.match(JSON_TYPE, *DOWNLOADS)
    return str(match) if match else JSON_TYPE


TEXT = {"schema": {"type": "string"}}
NOTE_OR_CONTENT = Response(
    {**ok(NoteOut).fields["content"], **{media_type: TEXT for media_type in DOWNLOADS}},
    status=200, description="The note; with `Accept: text/markdown` or `text/plain`, its content.")


def _content_response(note: StoredNote, media_type: str, etag: str) -> HTTPResponse:
    name = download_name(note.title, DOWNLOADS[media_type])
    ascii_name = name.encode("ascii", "replace").decode().replace("?", "_")
    disposition = (f'attachment; filename="{ascii_name}"; '
                   f"filename*=UTF-8''{quote(name, safe='')}")
    return raw(note.content.encode(), content_type=f"{media_type}; charset=utf-8",
               headers={"Content-Disposition": disposition, "ETag": etag, **PER_CALLER,
                        "Vary": PER_CALLER["Vary"] + ", Accept"})


@bp.get("/notes/<note_id:uuid>", ctx_reads_note=True)
@openapi.definition(
    summary="Read a note",
    description="The live text when the note is open for editing. Conditional with "
    "`If-None-Match`. With `Accept: text/markdown` or `text/plain`, the content itself as a "
    "download (`Content-Disposition: attachment`).",
    parameter=[NOTE_ID, IF_NONE_MATCH],
    response=[NOTE_OR_CONTENT, ok(None, 304, "Not modified."), *problems(note="read")],
    tag="notes",
)
async def read_note(request: Request, note_id: uuid.UUID) -> HTTPResponse:
    ctx = _ctx(request)
    prefetched, note = prefetched_note(request, note_id)
    if prefetched:  # (read with the credential: one round trip)
        if note is None:
            raise not_found()
        note = use_cases.live_note(ctx.hub, note)
    else:
        role, reader = read_access(request, note_id)
        try:
            note = await use_cases.read_note(ctx.store, ctx.hub, note_id, role=role,
                                             reader=reader)
        except use_cases.NoteNotFound:
            raise not_found() from None
    media_type = _wanted_type(request)
    etag = use_cases.etag_of(note.title, note.content, note.role)
    if media_type != JSON_TYPE:  # (another representation: another validator)
        etag = etag[:-1] + DOWNLOADS[media_type] + '"'
    if_none_match = request.headers.get("if-none-match")
    if if_none_match and use_cases.etag_matches(if_none_match, etag, weak=True):
        return empty(304, headers={"ETag": etag, **PER_CALLER})
    if media_type != JSON_TYPE:
        return _content_response(note, media_type, etag)
    return note_response(note, headers={"Vary": PER_CALLER["Vary"] + ", Accept"}, etag=etag)


async def _update(request: Request, note_id: uuid.UUID, model: type[BaseModel]) -> HTTPResponse:
    role = await authorize(request, note_id, write=True)
    body = parse_body(request, model)
    title, content = getattr(body, "title", None), getattr(body, "content", None)
    if title is None and content is None:
        raise Problem(422, "Send `title`, `content` or both.", kind="validation-error",
                      errors=[{"loc": [], "msg": "no field to change", "type": "missing"}])
    ctx = _ctx(request)
    try:
        note = await use_cases.update_note(
            ctx.store, ctx.hub, ctx.limits, note_id, title=title, content=content,
            if_match=request.headers.get("if-match"), role=role, author=author_of(request),
        )
    except use_cases.NoteNotFound:
        raise not_found() from None
    except use_cases.PreconditionFailed:
        raise Problem(412, "The note changed since the ETag in If-Match.",
                      kind="precondition-failed") from None
    except use_cases.InvalidNote as error:
        raise _invalid(error) from None
    return note_response(note)


@bp.put("/notes/<note_id:uuid>")
@openapi.definition(
    summary="Replace a note's title and content",
    description="On a note open for live editing the content change is applied as a minimal "
    "diff, so concurrent typing elsewhere survives.",
    parameter=[NOTE_ID, IF_MATCH],
    body=json_body(NoteReplace, "Both fields."),
    response=[ok(NoteOut), *problems(400, 412, 413, 415, 422, note="write")],
    tag="notes",
)
async def replace_note(request: Request, note_id: uuid.UUID) -> HTTPResponse:
    return await _update(request, note_id, NoteReplace)


@bp.patch("/notes/<note_id:uuid>")
@openapi.definition(
    summary="Change a note's title or content",
    parameter=[NOTE_ID, IF_MATCH],
    body=json_body(NotePatch, "Either field, or both."),
    response=[ok(NoteOut), *problems(400, 412, 413, 415, 422, note="write")],
    tag="notes",
)
async def patch_note(request: Request, note_id: uuid.UUID) -> HTTPResponse:
    return await _update(request, note_id, NotePatch)


@bp.delete("/notes/<note_id:uuid>")
@openapi.definition(
    summary="Delete a note",
    description="Live editors get `deleted` and close code 4404.",
    parameter=[NOTE_ID, IF_MATCH],
    response=[ok(None, 204, "Deleted."), *problems(412, note="manage")],
    tag="notes",
)
async def delete_note(request: Request, note_id: uuid.UUID) -> HTTPResponse:
    ctx = _ctx(request)
    role = await authorize(request, note_id, manage=True)
    try:
        await use_cases.delete_note(ctx.store, ctx.hub, note_id,
                                    if_match=request.headers.get("if-match"), role=role)
    except use_cases.NoteNotFound:
        raise not_found() from None
    except use_cases.PreconditionFailed:
        raise Problem(412, "The note changed since the ETag in If-Match.",
                      kind="precondition-failed") from None
    return empty(204)


@bp.post("/notes/<note_id:uuid>/edits")
@openapi.definition(
    summary="Apply one edit (a delta) over HTTP",
    description="The same semantics as an `edit` on the live socket: the delta, made on "
    "revision `rev`, is transformed past later revisions and applied. See the live protocol.",
    parameter=[NOTE_ID],
    body=json_body(EditRequest, "The base revision and the delta."),
    response=[ok(EditApplied), ok(EditConflict, 409, "`rev` is older than the history kept, or "
                                  "counts in another `epoch`: rebase onto `content` at `rev`.",
                                  "application/problem+json"),
              *problems(400, 413, 415, 422, note="write")],
    tag="live",
)
async def apply_edit(request: Request, note_id: uuid.UUID) -> HTTPResponse:
    await authorize(request, note_id, write=True)
    body = parse_body(request, EditRequest)
    try:
        ctx = _ctx(request)
        revision, epoch = await use_cases.apply_http_edit(
            ctx.store, ctx.hub, note_id, body.rev, body.delta_ops(), body.epoch,
            author=author_of(request))
    except use_cases.NoteNotFound:
        raise not_found() from None
    except use_cases.EditTooOld as stale:
        raise Problem(409, str(stale), kind="stale-revision",
                      extra={"rev": stale.rev, "epoch": stale.epoch,
                             "content": stale.content}) from None
    except EditRejected as rejected:
        raise Problem(422, rejected.message, kind=rejected.code.replace("_", "-"),
                      errors=[{"loc": ["delta"], "msg": rejected.message,
                               "type": rejected.code}]) from None
    return json_response({"rev": revision.rev, "epoch": epoch, "delta": revision.delta})
