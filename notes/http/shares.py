"""Sharing a note: its owner gives other users the viewer or editor role, or takes it back, and
makes share links that give a role to whoever holds them."""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty
from sanic.response import json as json_response
from sanic_ext.extensions.openapi.definitions import Parameter

from notes.collab.access import AccessChanged, Role
from notes.http.auth import authorize, require_user
from notes.http.bodies import parse_body
from notes.http.openapi_docs import NOTE_ID, json_body, ok, openapi, problems
from notes.http.problems import Problem
from notes.http.schemas import (
    LinkCreate,
    LinkCreated,
    LinkList,
    ShareList,
    ShareOut,
    ShareRequest,
)
from notes.store.accounts import AccountStore, LinkInfo, User

bp = Blueprint("shares")

USERNAME = Parameter("username", str, location="path", required=True,
                     description="Whom the note is shared with.")


def _store(request: Request) -> AccountStore:
    return request.app.ctx.account_store


def _share_json(username: str, role: Role, created_at) -> dict:
    return {"username": username, "role": role.value, "created_at": created_at.isoformat()}


async def _user_to_share_with(request: Request, note_id: uuid.UUID, username: str) -> User:
    user = await _store(request).user_by_name(username)
    if user is None:
        raise Problem(404, f"No user named {username!r}.", kind="no-such-user")
    owner = await _store(request).owner(note_id)
    if owner is not None and owner.id == user.id:
        raise Problem(422, "The owner already has every right to the note.",
                      kind="validation-error", errors=[{"loc": ["path", "username"],
                                                        "msg": "the note's owner",
                                                        "type": "owner"}])
    return user


@bp.get("/notes/<note_id:uuid>/shares")
@openapi.definition(
    summary="Who the note is shared with",
    description="Any user who may read the note may see its owner and its shares (not the "
    "holder of a share link: 403).",
    parameter=[NOTE_ID], response=[ok(ShareList), *problems(note="read")], tag="sharing",
)
async def list_shares(request: Request, note_id: uuid.UUID) -> HTTPResponse:
    await authorize(request, note_id)
    if request.app.ctx.settings.auth_on:
        require_user(request)  # who else has the note is not a link holder's business
    owner = await _store(request).owner(note_id)
    shares = await _store(request).shares(note_id)
    return json_response({
        "owner": None if owner is None else owner.username,
        "items": [_share_json(share.username, share.role, share.created_at)
                  for share in shares],
    })


@bp.put("/notes/<note_id:uuid>/shares/<username:str>")
@openapi.definition(
    summary="Share the note with a user, or change their role",
    description="Owner only. A viewer reads (live too); an editor also changes the content and "
    "the title. The user's open sockets on the note take the new role at once.",
    parameter=[NOTE_ID, USERNAME], body=json_body(ShareRequest, "The role to give."),
    response=[ok(ShareOut, 200, "The role changed."), ok(ShareOut, 201, "Shared."),
              *problems(400, (404, "No such note (or not one you may read), or no user by "
                                   "this name."), 413, 415, 422, note="manage")],
    tag="sharing",
)
async def put_share(request: Request, note_id: uuid.UUID, username: str) -> HTTPResponse:
    await authorize(request, note_id, manage=True)
    body = parse_body(request, ShareRequest)
    user = await _user_to_share_with(request, note_id, username)
    role = Role(body.role)
    share, created = await _store(request).put_share(note_id, user, role)
    await request.app.ctx.hub.access_changed(AccessChanged(note_id=note_id, user_id=user.id,
                                                           role=role))
    return json_response(_share_json(share.username, share.role, share.created_at),
                         status=201 if created else 200)


@bp.delete("/notes/<note_id:uuid>/shares/<username:str>")
@openapi.definition(
    summary="Stop sharing the note with a user",
    description="Owner only. The user's open sockets on the note are closed with 4403.",
    parameter=[NOTE_ID, USERNAME],
    response=[ok(None, 204, "No longer shared."),
              *problems((404, "No such note (or not one you may read), or it is not shared "
                              "with this user."), note="manage")],
    tag="sharing",
)
async def delete_share(request: Request, note_id: uuid.UUID, username: str) -> HTTPResponse:
    await authorize(request, note_id, manage=True)
    user = await _store(request).user_by_name(username)
    if user is None or not await _store(request).delete_share(note_id, user.id):
        raise Problem(404, f"The note is not shared with {username!r}.", kind="not-found")
    await request.app.ctx.hub.access_changed(AccessChanged(note_id=note_id, user_id=user.id))
    return empty(204)


# --- share links ---------------------------------------------------------------------------------

LINK_ID = Parameter("link_id", uuid.UUID, location="path", required=True,
                    description="The link's id.")


def _link_json(info: LinkInfo) -> dict:
    return {"id": str(info.id), "role": info.role.value, "created_at": info.created_at.isoformat()}


@bp.post("/notes/<note_id:uuid>/links")
@openapi.definition(
    summary="Make a share link",
    description="Owner only. Whoever has the link uses the note with its role, without an "
    "account: the page opens it from `url`; scripts and sockets send `token` as a bearer token. "
    "The token is in this answer only.",
    parameter=[NOTE_ID], body=json_body(LinkCreate, "The role the link gives."),
    response=[ok(LinkCreated, 201), *problems(400, 413, 415, 422, note="manage")],
    tag="sharing",
)
async def create_link(request: Request, note_id: uuid.UUID) -> HTTPResponse:
    await authorize(request, note_id, manage=True)
    body = parse_body(request, LinkCreate)
    info, issued = await request.app.ctx.accounts.create_link(note_id, Role(body.role))
    base = request.app.ctx.settings.public_url.rstrip("/") or f"{request.scheme}://{request.host}"
    url = f"{base}/?{urlencode({'note': note_id, 'link': issued.token})}"
    return json_response({**_link_json(info), "token": issued.token, "url": url}, status=201)


@bp.get("/notes/<note_id:uuid>/links")
@openapi.definition(
    summary="The note's share links (without their secrets)",
    description="Owner only.", parameter=[NOTE_ID],
    response=[ok(LinkList), *problems(note="manage")], tag="sharing",
)
async def list_links(request: Request, note_id: uuid.UUID) -> HTTPResponse:
    await authorize(request, note_id, manage=True)
    return json_response({"items": [_link_json(info)
                                    for info in await _store(request).links(note_id)]})


@bp.delete("/notes/<note_id:uuid>/links/<link_id:uuid>")
@openapi.definition(
    summary="Revoke a share link",
    description="Owner only. The link stops working at once: its open sockets are closed with "
    "4401.",
    parameter=[NOTE_ID, LINK_ID],
    response=[ok(None, 204, "Revoked."),
              *problems((404, "No such note (or not one you may read), or no such link of "
                              "it."), note="manage")],
    tag="sharing",
)
async def delete_link(request: Request, note_id: uuid.UUID, link_id: uuid.UUID) -> HTTPResponse:
    await authorize(request, note_id, manage=True)
    if not await _store(request).delete_link(note_id, link_id):
        raise Problem(404, "The note has no link with this id.", kind="not-found")
    await request.app.ctx.hub.access_changed(AccessChanged(credential_id=link_id))
    return empty(204)
