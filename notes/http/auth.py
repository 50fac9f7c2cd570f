"""Accounts over HTTP: the credentials check every request passes, and the ``/auth`` routes.

``authenticate`` (request middleware) finds the caller: ``Authorization: Bearer TOKEN``, the
session cookie, or on a websocket ``?token=TOKEN``. Without valid credentials a route answers
401 unless it is marked public (``ctx_public=True``: health, docs, the page, its assets and
signing in; a public route looks its caller up only with ``ctx_wants_caller=True``). A websocket
route (``ctx_socket=True``) checks for itself, so as to close with 4401. State-changing requests
from a browser on another origin are refused (403), whatever their credentials: no cross-site
request forgery.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty
from sanic.response import json as json_response

from notes.accounts import (
    Accounts,
    BadCredentials,
    Caller,
    InvalidAccount,
    Throttled,
    UsernameTaken,
)
from notes.collab.access import AccessChanged, Role
from notes.collab.quotas import request_rate
from notes.config import Settings
from notes.http.bodies import parse_body
from notes.http.openapi_docs import json_body, ok, openapi, problems
from notes.http.problems import Problem
from notes.http.public import SAFE_METHODS, SESSION_COOKIE, is_public
from notes.http.schemas import (
    AuthStatus,
    Credentials,
    TokenCreate,
    TokenCreated,
    TokenList,
    UserOut,
)
from notes.store.accounts import User
from notes.store.queries import StoredNote

bp = Blueprint("auth")


def _accounts(request: Request) -> Accounts:
    return request.app.ctx.accounts


def _settings(request: Request) -> Settings:
    return request.app.ctx.settings


def caller_of(request: Request) -> Caller | None:
    return getattr(request.ctx, "caller", None)


def _route_flag(request: Request, name: str) -> bool:
    route = request.route
    return route is not None and bool(getattr(route.ctx, name, False))


def _public(request: Request) -> bool:
    return (request.route is None  # no such route: 404 (or 405) for everyone
            or is_public(request.route, request.path))


def is_socket(request: Request) -> bool:
    return _route_flag(request, "socket")


def origin_allowed(request: Request, origin: str | None) -> bool:
    """No Origin (not a browser), this server's own (its Host), or one listed in
    NOTES_ALLOWED_ORIGINS."""
    if origin is None:
        return True
    origin = origin.rstrip("/")
    return urlsplit(origin).netloc == request.host or origin in _settings(request).origins


NO_CREDENTIALS = "Sign in, or send `Authorization: Bearer TOKEN`."


def unauthorized(detail: str, *, invalid_token: bool = False) -> Problem:
    challenge = 'Bearer realm="notes"' + (', error="invalid_token"' if invalid_token else "")
    return Problem(401, detail, kind="unauthorized", headers={"WWW-Authenticate": challenge})


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


async def _find_caller(request: Request) -> tuple[Caller | None, bool]:
    """(the caller, whether credentials were given at all)."""
    token = _bearer(request)
    if token is None and is_socket(request):
        token = request.args.get("token")
    if token is not None:
        return await _credential_caller(request, "token", token), True
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        return await _credential_caller(request, "session", cookie), True
    return None, False


async def _credential_caller(request: Request, kind: str, token: str) -> Caller | None:
    """The caller of a credential. On a route that reads one note (``ctx_reads_note=True``, its
    id in ``note_id``) with accounts on, the note is read in the credential's own statement
    (one round trip, not two) and kept for the route: ``prefetched_note``."""
    accounts = _accounts(request)
    if not (_route_flag(request, "reads_note") and _settings(request).auth_on):
        return await accounts.authenticate(kind, token)
    note_id = request.match_info["note_id"]

    async def lookup(credential_id: uuid.UUID):
        return await request.app.ctx.store.get_with_credential(kind, credential_id, note_id)

    caller, note = await accounts.authenticate_with(kind, token, lookup)
    if caller is not None and caller.user is not None:
        request.ctx.prefetched = (note_id, note)
    return caller


def prefetched_note(request: Request, note_id: uuid.UUID) -> tuple[bool, StoredNote | None]:
    """(whether the note was read with the caller's credential, the note: None if it is not
    theirs to read); (False, None) when it was not (a share link, accounts off)."""
    prefetched = getattr(request.ctx, "prefetched", None)
    if prefetched is None or prefetched[0] != note_id:
        return False, None
    return True, prefetched[1]


async def authenticate(request: Request) -> None:
    """Request middleware: ``request.ctx.caller``, 401 where credentials are needed, 403 for a
    cross-site state-changing request, 429 for a write past the caller's rate."""
    request.ctx.caller = None
    if request.method in SAFE_METHODS:
        if request.method != "OPTIONS":
            await _identify(request)
        return
    if not origin_allowed(request, request.headers.get("origin")):
        raise Problem(403, "Cross-site requests may not change anything here.",
                      kind="cross-site-request")
    await _identify(request)
    limit_writes(request)


def limit_writes(request: Request) -> None:
    """429 with ``Retry-After`` for a write past ``NOTES_REST_WRITE_RATE``: counted per
    signed-in user, else (anonymous, a share link, accounts off) per client address."""
    rate = request.app.ctx.write_rate
    if rate is None:
        return
    caller = caller_of(request)
    key = (("user", caller.user.id) if caller is not None and caller.user is not None
           else ("address", client_address(request)))
    wait = rate.take(key)
    if wait:
        raise Problem(429, "Too many changes in a short time; wait before sending more.",
                      kind="too-many-requests", headers={"Retry-After": str(wait)})


@bp.before_server_start
async def _setup_write_rate(app, _loop=None) -> None:
    settings: Settings = app.ctx.settings
    app.ctx.write_rate = request_rate(settings.rest_write_rate, settings.rest_write_burst)


async def _identify(request: Request) -> None:
    """``request.ctx.caller``; 401 where credentials are needed."""
    public = _public(request)
    if public and not _route_flag(request, "wants_caller"):
        return  # (no database lookup for the page, its assets, health)
    caller, given = await _find_caller(request)
    request.ctx.caller = caller
    if caller is not None or not _settings(request).auth_on:
        return
    if public or is_socket(request):
        return
    if given:
        raise unauthorized("The credentials are not valid (wrong, deleted or expired).",
                           invalid_token=True)
    raise unauthorized(NO_CREDENTIALS)


def require_caller(request: Request) -> Caller:
    caller = caller_of(request)
    if caller is None:
        raise unauthorized(NO_CREDENTIALS)
    return caller


def require_user(request: Request) -> User:
    """The signed-in user: 401 without credentials, 403 for a share link (it opens one note)."""
    caller = require_caller(request)
    if caller.user is None:
        raise Problem(403, "A share link opens its one note; sign in for anything else.",
                      kind="forbidden")
    return caller.user


def account_of(request: Request) -> User | None:
    """The signed-in user a note belongs to when they make it, or whose notes they list; None
    with accounts off (everyone's notes are everyone's)."""
    return require_user(request) if _settings(request).auth_on else None


def author_of(request: Request) -> str | None:
    """Who a change made by this request is credited to in the note's versions (None: nobody
    known, accounts are off)."""
    caller = caller_of(request)
    if caller is None:
        return None
    return caller.user.username if caller.user is not None else "(share link)"


async def caller_role(request: Request, caller: Caller, note_id: uuid.UUID) -> Role | None:
    """The role ``caller`` has on the note: a share link's own, on its note only; a user's
    from ownership and shares (None: they may not see it)."""
    if caller.link is not None:
        return caller.link.role if caller.link.note_id == note_id else None
    assert caller.user is not None
    return await request.app.ctx.account_store.role(note_id, caller.user.id)


async def role_on(request: Request, note_id: uuid.UUID) -> Role | None:
    """The caller's role on the note (None: they may not see it). With accounts off everyone
    owns everything (the note may still not exist)."""
    if not _settings(request).auth_on:
        return Role.OWNER
    return await caller_role(request, require_caller(request), note_id)


def read_access(request: Request, note_id: uuid.UUID) -> tuple[Role | None, uuid.UUID | None]:
    """Who may read the note, for a read that checks the role in the note's own statement:
    (the caller's role, None) when it is known without the database (accounts off: owner; a
    share link: its role, on its one note), else (None, the user whose role the read looks
    up). 404 when a share link is for another note."""
    if not _settings(request).auth_on:
        return Role.OWNER, None
    caller = require_caller(request)
    if caller.link is not None:
        if caller.link.note_id != note_id:
            raise not_found()
        return caller.link.role, None
    assert caller.user is not None
    return None, caller.user.id


def not_found() -> Problem:
    return Problem(404, "No note with this id.", kind="not-found")


async def authorize(request: Request, note_id: uuid.UUID, *, write: bool = False,
                    manage: bool = False) -> Role:
    """The caller's role if it allows the action: 404 when the note is not theirs to see (its
    existence is not revealed), 403 when they see it but may not do this."""
    role = await role_on(request, note_id)
    if role is None:
        raise not_found()
    if manage and not role.can_manage:
        raise Problem(403, "Only the note's owner may do this.", kind="forbidden")
    if write and not role.can_write:
        raise Problem(403, "You may read this note but not change it.", kind="forbidden")
    return role


def user_json(user) -> dict:
    return UserOut.model_validate(user, from_attributes=True).model_dump(mode="json")


def _set_session_cookie(request: Request, response: HTTPResponse, token: str) -> None:
    settings = _settings(request)
    response.add_cookie(SESSION_COOKIE, token, path="/", httponly=True, samesite="Lax",
                        secure=settings.cookie_secure,
                        max_age=int(settings.session_days * 86400))


def client_address(request: Request) -> str:
    return request.remote_addr or request.ip or "unknown"


def _invalid(error: InvalidAccount) -> Problem:
    return Problem(422, "The account breaks a rule.", kind="validation-error",
                   errors=error.errors)


# --- routes ---------------------------------------------------------------------------------------


@bp.get("/auth/status", ctx_public=True, ctx_wants_caller=True)
@openapi.definition(summary="Are accounts on, may I sign up, who am I?",
                    response=[ok(AuthStatus), *problems()], tag="accounts")
async def auth_status(request: Request) -> HTTPResponse:
    settings = _settings(request)
    caller = caller_of(request)
    return json_response({"auth": settings.auth, "signup": settings.signup,
                          "user": None if caller is None or caller.user is None
                          else user_json(caller.user)})


@bp.post("/auth/signup", ctx_public=True)
@openapi.definition(
    summary="Create an account",
    description="Answers with the user and a session cookie. Refused (403) while "
    "`NOTES_SIGNUP=closed`: then accounts come from `notes users add NAME`.",
    body=json_body(Credentials, "The new account's username and password."),
    response=[ok(UserOut, 201, "Created and signed in (`Set-Cookie`)."),
              *problems(400, (403, "Sign-up is closed (`NOTES_SIGNUP=closed`); or the "
                                  "request came from a page of another site."),
                        (409, "The username is taken."), 413, 415, 422)],
    tag="accounts",
)
async def signup(request: Request) -> HTTPResponse:
    if _settings(request).signup != "open":
        raise Problem(403, "Sign-up is closed on this server; ask its operator for an account.",
                      kind="signup-closed")
    body = parse_body(request, Credentials)
    accounts = _accounts(request)
    try:
        user = await accounts.create_user(body.username, body.password)
    except InvalidAccount as error:
        raise _invalid(error) from None
    except UsernameTaken:
        raise Problem(409, "That username is taken.", kind="username-taken") from None
    issued = await accounts.start_session(user)
    response = json_response(user_json(user), status=201)
    _set_session_cookie(request, response, issued.token)
    return response


@bp.post("/auth/login", ctx_public=True)
@openapi.definition(
    summary="Sign in",
    description="Answers with the user and a session cookie. After repeated failures for one "
    "username or from one address, 429 with `Retry-After`.",
    body=json_body(Credentials, "Username and password."),
    response=[ok(UserOut, 200, "Signed in (`Set-Cookie`)."),
              *problems(400, (401, "Wrong username or password (the same answer for both)."),
                        413, 415, 422, (429, "Too many failed sign-ins for this username or "
                                             "from this address: wait `Retry-After` seconds."))],
    tag="accounts",
)
async def login(request: Request) -> HTTPResponse:
    body = parse_body(request, Credentials)
    try:
        user, issued = await _accounts(request).login(body.username, body.password,
                                                      client_address(request))
    except Throttled as throttled:
        raise Problem(429, "Too many failed sign-ins; wait before trying again.",
                      kind="too-many-attempts",
                      headers={"Retry-After": str(throttled.retry_after)}) from None
    except BadCredentials:
        raise unauthorized("Wrong username or password.") from None
    response = json_response(user_json(user))
    _set_session_cookie(request, response, issued.token)
    return response


@bp.post("/auth/logout", ctx_public=True)
@openapi.definition(
    summary="Sign out",
    description="Ends the session on the server and closes its live sockets (4401).",
    response=[ok(None, 204, "Signed out (the cookie is cleared)."), *problems()],
    tag="accounts",
)
async def logout(request: Request) -> HTTPResponse:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        ended = await _accounts(request).end_session(cookie)
        if ended is not None:
            await request.app.ctx.hub.access_changed(AccessChanged(credential_id=ended))
    response = empty(204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@bp.get("/auth/me")
@openapi.definition(summary="Who am I?", response=[ok(UserOut), *problems()],
                    tag="accounts")
async def me(request: Request) -> HTTPResponse:
    return json_response(user_json(require_user(request)))


@bp.post("/auth/tokens")
@openapi.definition(
    summary="Create an API token",
    description="The token is in the answer only this once; the server keeps only its hash.",
    body=json_body(TokenCreate, "A name for the token."),
    response=[ok(TokenCreated, 201), *problems(400, 413, 415, 422)],
    tag="accounts",
)
async def create_token(request: Request) -> HTTPResponse:
    body = parse_body(request, TokenCreate)
    try:
        info, issued = await _accounts(request).create_token(require_user(request),
                                                             body.name)
    except InvalidAccount as error:
        raise _invalid(error) from None
    return json_response({**_token_json(info), "token": issued.token}, status=201)


def _token_json(info) -> dict:
    return {"id": str(info.id), "name": info.name, "created_at": info.created_at.isoformat()}


@bp.get("/auth/tokens")
@openapi.definition(summary="List my API tokens (without their secrets)",
                    response=[ok(TokenList), *problems()], tag="accounts")
async def list_tokens(request: Request) -> HTTPResponse:
    tokens = await request.app.ctx.account_store.tokens(require_user(request).id)
    return json_response({"items": [_token_json(info) for info in tokens]})


@bp.delete("/auth/tokens/<token_id:uuid>")
@openapi.definition(
    summary="Delete an API token",
    description="It stops working at once: its live sockets are closed with 4401.",
    response=[ok(None, 204, "Deleted."), *problems((404, "You have no token with this id."))],
    tag="accounts",
)
async def delete_token(request: Request, token_id: uuid.UUID) -> HTTPResponse:
    user = require_user(request)
    if not await request.app.ctx.account_store.delete_token(user.id, token_id):
        raise Problem(404, "You have no token with this id.", kind="not-found")
    await request.app.ctx.hub.access_changed(AccessChanged(credential_id=token_id))
    return empty(204)
