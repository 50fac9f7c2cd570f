"""The websocket route: a thin adapter between a Sanic socket and the collaborative core."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from sanic import Blueprint, Request
from sanic.server.websockets.impl import WebsocketImplProtocol
from websockets.exceptions import ConnectionClosed
from websockets.protocol import OPEN

from notes.collab.hub import HubClosed
from notes.collab.room import CLOSE_NOTE_GONE
from notes.collab.session import handle_frame

log = logging.getLogger(__name__)

bp = Blueprint("live")

CLOSE_SLOW_READER = 1013
CLOSE_SERVER_ERROR = 1011
MAX_NAME = 100


# Bytes waiting in a socket's transport above which frames go through its queue instead.
DIRECT_WRITE_LIMIT = 64 * 1024


class SocketConnection:
    """A room's view of one socket: ``send`` never blocks.

    A frame for a socket that keeps up is written to its transport at once (no task switch, no
    lock: fan-out's hot path). Otherwise it waits in a bounded queue that a writer task drains;
    a reader that falls ``queue_size`` messages behind is cut off with 1013, so a slow client
    never slows the room down.
    """

    def __init__(self, ws: WebsocketImplProtocol, name: str, queue_size: int):
        self.id = uuid.uuid4().hex[:12]
        self.name = name
        self.ws = ws
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=queue_size)
        self.close_code: int | None = None
        self.close_reason = ""
        self.writing = False  # the writer task is inside ws.send

    def send(self, text: str) -> None:
        if self.close_code is not None:
            return
        if not self.writing and self.queue.empty() and self._write_now(text):
            return
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.fail(CLOSE_SLOW_READER, "too slow: outgoing queue full")

    def close(self, code: int, reason: str = "") -> None:
        if self.close_code is not None:
            return
        self.close_code, self.close_reason = code, reason
        try:
            self.queue.put_nowait(None)
        except asyncio.QueueFull:
            self.ws.fail_connection(code, reason)

    def fail(self, code: int, reason: str) -> None:
        self.close_code, self.close_reason = code, reason
        self.ws.fail_connection(code, reason)
        # Wake the handler's pending recv so that the room lets go of this connection now: a
        # client that does not read never answers the close, and the transport would linger
        # (a stale peer, no `leave`) until the close timeout.
        pending_recv = self.ws.recv_cancel
        if pending_recv is not None and not pending_recv.done():
            pending_recv.cancel()

    def _write_now(self, text: str) -> bool:
        """Frame and write ``text`` now if the socket is open and its transport keeps up.

        Synchronous, so frames never interleave with the writer task's or Sanic's pings (those
        frame and hand over their bytes without awaiting in between).
        """
        ws = self.ws
        transport = ws.io_proto.transport if ws.io_proto else None
        if (transport is None or transport.is_closing() or ws.ws_proto.state is not OPEN
                or transport.get_write_buffer_size() > DIRECT_WRITE_LIMIT):
            return False
        ws.ws_proto.send_text(text.encode())
        for data in ws.ws_proto.data_to_send():
            transport.write(data)
        return True

    async def write_messages(self) -> None:
        while True:
            text = await self.queue.get()
            if text is None:
                await self.ws.close(self.close_code or 1000, self.close_reason)
                return
            self.writing = True
            try:
                await self.ws.send(text)
            finally:
                self.writing = False


def _since(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value >= 0 else None


@bp.websocket("/notes/<note_id:uuid>/live")
async def live(request: Request, ws: WebsocketImplProtocol, note_id: uuid.UUID) -> None:
    hub = request.app.ctx.hub
    name = (request.args.get("name") or "anonymous")[:MAX_NAME]
    connection = SocketConnection(ws, name, request.app.ctx.settings.ws_queue_size)
    if hub.closing:
        await ws.close(1001, "server shutting down")
        return
    try:
        room = await hub.connect(note_id, connection, _since(request.args.get("since")))
    except HubClosed:
        await ws.close(1001, "server shutting down")
        return
    except Exception:  # the database is down, say: a server error, not a normal close
        log.exception("opening note %s for a live connection failed", note_id)
        await ws.close(CLOSE_SERVER_ERROR, "server error")
        return
    if room is None:
        await ws.close(CLOSE_NOTE_GONE, "note not found")
        return
    writer = asyncio.create_task(connection.write_messages())
    try:
        while connection.close_code is None:
            frame = await ws.recv()
            if frame is None:
                break
            handle_frame(room, connection, frame)
    except ConnectionClosed:
        pass
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("live connection %s on note %s failed", connection.id, note_id)
        connection.fail(CLOSE_SERVER_ERROR, "server error")
    finally:
        # Sanic cancels this handler again when the transport goes away, possibly while it
        # awaits here: the writer must be stopped whatever happens (the hub's release finishes
        # its save on its own).
        try:
            await hub.disconnect(room, connection)
            if connection.close_code is not None and connection.close_code != CLOSE_SLOW_READER:
                with contextlib.suppress(asyncio.TimeoutError, ConnectionClosed):
                    await asyncio.wait_for(asyncio.shield(writer), timeout=5)
        finally:
            writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionClosed, Exception):
            await writer
