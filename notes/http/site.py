"""Health, the browser page and the protocol document."""

from __future__ import annotations

import asyncio
import os
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, file, json, text

from notes.http import live
from notes.http.openapi_docs import ok, openapi, problems
from notes.http.problems import Problem
from notes.http.schemas import Health

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


def _protocol_doc() -> Traversable:
    """docs/protocol.md of the source tree, else the copy installed as package data
    (``notes.docs``, see pyproject.toml)."""
    source = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
    return source if source.is_file() else files("notes.docs") / "protocol.md"


PROTOCOL_DOC = _protocol_doc()

bp = Blueprint("site")


HEALTH_WAIT = 5.0  # seconds


@bp.get("/health", ctx_public=True)
@openapi.definition(summary="Is the server and its database up?",
                    response=[ok(Health), *problems()], tag="service")
async def health(request: Request) -> HTTPResponse:
    try:
        # (bounded: a hung database must not hang the load balancer's health check)
        await asyncio.wait_for(request.app.ctx.store.ping(), HEALTH_WAIT)
    except Exception:
        raise Problem(503, "The database does not answer.", kind="database-unavailable") from None
    return json({"status": "ok", "database": "ok",
                 "process": {"pid": os.getpid(), **request.app.ctx.hub.stats(),
                             "frames_sent": live.OUTBOX.frames,
                             "socket_writes": live.OUTBOX.writes}})


@bp.get("/", ctx_public=True)
@openapi.exclude()
async def index(request: Request) -> HTTPResponse:
    return await file(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


@bp.get("/docs/protocol", ctx_public=True)
@openapi.exclude()
async def protocol(request: Request) -> HTTPResponse:
    return text(PROTOCOL_DOC.read_text(encoding="utf-8"),
                content_type="text/plain; charset=utf-8")
