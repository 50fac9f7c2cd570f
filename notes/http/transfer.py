"""``GET /export``: the caller's notes as a zip of Markdown files (``notes.transfer``), streamed
as it is made, so an export of many notes never sits whole in memory."""

from __future__ import annotations

import asyncio
import zipfile
from datetime import UTC, datetime

from sanic import Blueprint, Request
from sanic.response import HTTPResponse
from sanic_ext.extensions.openapi.definitions import Response

from notes import use_cases
from notes.http.auth import account_of
from notes.http.openapi_docs import openapi, problems
from notes.transfer import file_name, render

bp = Blueprint("transfer")

ZIP_TYPE = "application/zip"
NOT_FOR_LINKS = "A share link cannot export."


class _Chunks:
    """A write-only stream ``zipfile`` writes into (it handles one that cannot seek), emptied
    into the response as it fills."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data


def _add(archive: zipfile.ZipFile, name: str, data: bytes, when: datetime) -> None:
    info = zipfile.ZipInfo(name, date_time=when.astimezone(UTC).timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, data)


@bp.get("/export")
@openapi.definition(
    summary="Export my notes",
    description="A zip of every note you own outside the trash (every note, with accounts "
    "off): one Markdown file per note, named after its title and id, starting with a front "
    "matter of its id, title (a JSON string), created and updated times; the content follows "
    "byte for byte. `notes import` reads it back (a note already there, by id, is skipped).",
    response=[Response({ZIP_TYPE: {"schema": {"type": "string", "format": "binary"}}},
                       status=200, description="The zip, as a download."),
              *problems((403, NOT_FOR_LINKS))],
    tag="notes",
)
async def export_notes(request: Request) -> HTTPResponse | None:
    owner = account_of(request)
    ctx = request.app.ctx
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    response = await request.respond(content_type=ZIP_TYPE, headers={
        "Content-Disposition": f'attachment; filename="notes-{stamp}.zip"',
        "Cache-Control": "private, no-store",
    })
    chunks = _Chunks()
    with zipfile.ZipFile(chunks, "w") as archive:
        async for note in use_cases.exported_notes(ctx.transfers, ctx.hub,
                                                   None if owner is None else owner.id):
            await asyncio.to_thread(_add, archive, file_name(note), render(note),
                                    note.updated_at)
            await response.send(chunks.take())
    await response.send(chunks.take())  # (the archive's directory, written on closing)
    await response.eof()
    return None
