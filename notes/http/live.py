"""The websocket routes: thin adapters between Sanic sockets and the collaborative core.

``/notes/{id}/live`` speaks the JSON protocol (``notes.collab.session``), ``/yjs/{id}`` the Yjs
protocol (``notes.collab.yjs``); both join the same rooms through ``serve_socket``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import math
import uuid
from collections.abc import Awaitable, Callable

from sanic import Blueprint, Request
from sanic.exceptions import WebsocketClosed
from sanic.server.websockets.frame import WebsocketFrameAssembler
from sanic.server.websockets.impl import WebsocketImplProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame as WireFrame
from websockets.frames import Opcode
from websockets.protocol import OPEN

from notes.collab.access import CLOSE_FORBIDDEN, CLOSE_UNAUTHENTICATED, Access
from notes.collab.hub import HubClosed
from notes.collab.limits import RateLimit, rate_limit
from notes.collab.quotas import CLOSE_TRY_LATER, SocketQuota, TooManySockets
from notes.collab.room import CLOSE_NOTE_GONE, Codec, Frame, Room
from notes.collab.session import JSON, Resume, admit_frame, first_edit_ref, handle_frame
from notes.collab.yjs import CLOSE_INVALID, YJS, YjsRefused, handle_message
from notes.http.auth import caller_of, caller_role, client_address, origin_allowed

log = logging.getLogger(__name__)

bp = Blueprint("live")

CLOSE_SLOW_READER = 1013
CLOSE_SERVER_ERROR = 1011
MAX_NAME = 100


# Bytes waiting in a socket's transport above which frames go through its queue instead.
DIRECT_WRITE_LIMIT = 64 * 1024


class Outbox:
    """The frames for sockets that keep up, written once per turn of the event loop.

    A server's frames are unmasked and, without extensions, the same bytes for every socket:
    a broadcast is framed once, whoever gets it (``wire``). Everything a socket gets in one turn
    of the loop goes out in one write at the end of it (``flush``). A write costs far more than
    the bytes in it (a syscall, and a wakeup of the reader), so while the server is busy the
    frames of ``interval`` seconds go out together: the first flush after a quiet spell is at
    once, the next one not before ``interval`` has passed since the last.
    """

    def __init__(self, interval: float = 0.0) -> None:
        self.interval = interval
        self._pending: list[SocketConnection] = []
        self._framed: dict[int, tuple[Frame, bytes]] = {}  # id(frame) -> (frame, its bytes)
        self._last_flush = -math.inf
        self.frames = 0  # frames sent, to any socket
        self.writes = 0  # transport writes they took
        self.slow_readers = 0  # sockets closed with 1013: their queue was full
        # Sockets ended, by the close code the server sent (1000 normal, 4401/4403 refused
        # credentials, 1008 rate limit, 1013 slow reader or too many sockets, ...).
        self.closes: collections.Counter[int] = collections.Counter()

    def wire(self, frame: Frame) -> bytes:
        """``frame`` as a websocket frame on the wire (built once a flush for the same object;
        the entry keeps the object alive, so its id is not reused meanwhile)."""
        framed = self._framed.get(id(frame))
        if framed is not None and framed[0] is frame:
            return framed[1]
        if isinstance(frame, str):
            data = WireFrame(Opcode.TEXT, frame.encode()).serialize(mask=False)
        else:
            data = WireFrame(Opcode.BINARY, frame).serialize(mask=False)
        self._framed[id(frame)] = (frame, data)
        return data

    def add(self, connection: SocketConnection) -> None:
        """``connection`` has bytes to write at the next flush."""
        if not self._pending:
            loop = asyncio.get_running_loop()
            wait = self._last_flush + self.interval - loop.time()
            if wait > 0:
                loop.call_later(wait, self.flush)
            else:
                loop.call_soon(self.flush)
        self._pending.append(connection)

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        self._framed.clear()
        self._last_flush = asyncio.get_running_loop().time()
        for connection in pending:
            connection.write_out()


OUTBOX = Outbox()  # (one event loop a process)


@bp.before_server_start
async def _configure_outbox(app, _loop=None) -> None:
    OUTBOX.interval = app.ctx.settings.ws_batch_ms / 1000


@bp.before_server_start
async def _setup_socket_quota(app, _loop=None) -> None:
    settings = app.ctx.settings
    app.ctx.socket_quota = SocketQuota(settings.ws_per_note, settings.ws_per_user,
                                       settings.ws_per_address)


class SocketConnection:
    """A room's member for one socket: ``send`` never blocks.

    A frame for a socket that keeps up goes to the ``Outbox``, which writes it to the transport
    at the end of this turn of the loop with the socket's other frames of the turn (no task
    switch, no lock: fan-out's hot path). Otherwise it waits in a bounded queue that a writer
    task drains; a reader that falls ``queue_size`` messages behind is cut off with 1013, so a
    slow client never slows the room down. The queue and its task are made the first time they
    are needed (most sockets never fall behind, and idle ones are many: 4.4 KB saved each).
    """

    def __init__(self, ws: WebsocketImplProtocol, name: str, queue_size: int, codec: Codec,
                 access: Access, outbox: Outbox = OUTBOX, limit: RateLimit | None = None):
        self.id = uuid.uuid4().hex[:12]
        self.limit = limit  # the client's messages a second (None: no limit)
        self.name = name
        self.codec = codec
        self.access = access
        self.ws = ws
        self.outbox = outbox
        self.queue_size = queue_size
        self.queue: asyncio.Queue[Frame | None] | None = None  # (see ``_backlog``)
        self.writer: asyncio.Task[None] | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self.writing = False  # the writer task is inside ws.send
        self._out: list[bytes] = []  # framed, for the outbox's next flush

    def send(self, frame: Frame) -> None:
        if self.close_code is not None:
            return
        if self._out:  # (while some wait for the flush, the queue is empty: order is kept)
            self._out.append(self.outbox.wire(frame))
            return
        if not self.writing and (self.queue is None or self.queue.empty()) and self._keeps_up():
            self._out.append(self.outbox.wire(frame))
            self.outbox.add(self)
            return
        try:
            self._backlog().put_nowait(frame)
        except asyncio.QueueFull:
            self.outbox.slow_readers += 1
            self.fail(CLOSE_SLOW_READER, "too slow: outgoing queue full")

    def close(self, code: int, reason: str = "") -> None:
        if self.close_code is not None:
            return
        self.close_code, self.close_reason = code, reason
        try:
            self._backlog().put_nowait(None)
        except asyncio.QueueFull:
            self.ws.fail_connection(code, reason)

    def fail(self, code: int, reason: str) -> None:
        self.close_code, self.close_reason = code, reason
        self._out.clear()
        self.ws.fail_connection(code, reason)
        # Wake the handler's pending recv so that the room lets go of this connection now: a
        # client that does not read never answers the close, and the transport would linger
        # (a stale peer, no `leave`) until the close timeout.
        pending_recv = self.ws.recv_cancel
        if pending_recv is not None and not pending_recv.done():
            pending_recv.cancel()

    def _backlog(self) -> asyncio.Queue[Frame | None]:
        """The queue of frames waiting for the writer task (both made on first use)."""
        if self.queue is None:
            self.queue = asyncio.Queue(maxsize=self.queue_size)
            self.writer = asyncio.get_running_loop().create_task(self.write_messages(self.queue))
        return self.queue

    def _open_transport(self):
        """The socket's transport if the websocket is open and it can take bytes, else None."""
        ws = self.ws
        transport = ws.io_proto.transport if ws.io_proto else None
        if transport is None or transport.is_closing() or ws.ws_proto.state is not OPEN:
            return None
        return transport

    def _keeps_up(self) -> bool:
        transport = self._open_transport()
        return transport is not None and transport.get_write_buffer_size() <= DIRECT_WRITE_LIMIT

    def write_out(self) -> None:
        """Write the frames waiting for the flush in one go (dropped if the socket closed)."""
        out, self._out = self._out, []
        transport = self._open_transport() if out else None
        if transport is not None:
            transport.write(out[0] if len(out) == 1 else b"".join(out))
            self.outbox.frames += len(out)
            self.outbox.writes += 1

    async def write_messages(self, queue: asyncio.Queue[Frame | None]) -> None:
        while True:
            frame = await queue.get()
            self.write_out()  # (none wait for the flush while the queue has frames; to be sure)
            if frame is None:
                await self.ws.close(self.close_code or 1000, self.close_reason)
                return
            self.writing = True
            try:
                await self.ws.send(frame)
                self.outbox.frames += 1
                self.outbox.writes += 1
            finally:
                self.writing = False


def _since(raw: str | None, epoch: str | None) -> Resume | None:
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        return None
    return Resume(value, epoch) if value >= 0 else None


def _name(request: Request) -> str:
    return (request.args.get("name") or "anonymous")[:MAX_NAME]


async def socket_access(request: Request, ws: WebsocketImplProtocol,
                        note_id: uuid.UUID | None) -> Access | None:
    """Check the handshake's credentials and the caller's role before anything about the note
    is sent; None once the socket is closed: 4401 without valid credentials, 4403 for a
    cookie from another site's page, 4404 for a note the caller may not see (``note_id`` None:
    not a note id at all)."""
    if not request.app.ctx.settings.auth_on:
        if note_id is None:
            await ws.close(CLOSE_NOTE_GONE, "note not found")
            return None
        return Access()
    caller = caller_of(request)
    if caller is None:
        await ws.close(CLOSE_UNAUTHENTICATED, "sign in, or pass ?token=TOKEN")
        return None
    if caller.kind == "session" and not origin_allowed(request, request.headers.get("origin")):
        await ws.close(CLOSE_FORBIDDEN, "cross-site socket refused")
        return None
    try:
        role = None if note_id is None else await caller_role(request, caller, note_id)
    except Exception:
        log.exception("checking access to note %s for a live connection failed", note_id)
        await ws.close(CLOSE_SERVER_ERROR, "server error")
        return None
    if role is None:
        await ws.close(CLOSE_NOTE_GONE, "note not found")
        return None
    user = caller.user
    return Access(None if user is None else user.id, caller.credential_id, role.can_write,
                  None if user is None else user.username)


async def confirm_access(request: Request, note_id: uuid.UUID,
                         connection: SocketConnection) -> None:
    """Check again once joined: a share revoked or a credential ended while the note loaded
    (the hub acts only on the sockets it already holds) must not be missed."""
    access, caller = connection.access, caller_of(request)
    if caller is None or not request.app.ctx.settings.auth_on:
        return
    try:
        valid = await request.app.ctx.accounts.still_valid(caller)
        role = await caller_role(request, caller, note_id) if valid else None
    except Exception:
        log.exception("checking access to note %s again failed", note_id)
        connection.close(CLOSE_SERVER_ERROR, "server error")
        return
    if not valid:
        connection.close(CLOSE_UNAUTHENTICATED, "signed out or token deleted")
    elif role is None:
        connection.close(CLOSE_FORBIDDEN, "your access to this note was revoked")
    else:
        access.can_write = role.can_write


SocketHandler = Callable[..., Awaitable[None]]


def _count_close(ws: WebsocketImplProtocol) -> None:
    """Count the ended socket under the close code sent (Sanic sends 1000 after a handler
    that returns without closing)."""
    protocol = getattr(ws, "ws_proto", None)
    close = getattr(protocol, "close_sent", None) or getattr(protocol, "close_rcvd", None)
    OUTBOX.closes[int(close.code) if close is not None else 1000] += 1


def counts_close(handler: SocketHandler) -> SocketHandler:
    """A socket route whose ended socket is counted under its close code (``OUTBOX.closes``),
    whichever way it ended: refused at the handshake, closed by either side, or failed."""
    @functools.wraps(handler)
    async def counted(request: Request, ws: WebsocketImplProtocol, *args, **kwargs) -> None:
        try:
            await handler(request, ws, *args, **kwargs)
        finally:
            _count_close(ws)

    return counted


@bp.websocket("/notes/<note_id:uuid>/live", ctx_socket=True)
@counts_close
async def live(request: Request, ws: WebsocketImplProtocol, note_id: uuid.UUID) -> None:
    access = await socket_access(request, ws, note_id)
    if access is None:
        return
    connection = _connection(request, ws, JSON, access)
    hub = request.app.ctx.hub
    edited = False  # the first edit came (and its ref was looked up)

    async def handle(room: Room, connection: SocketConnection, frame: Frame) -> None:
        nonlocal edited
        if not admit_frame(connection, connection.limit, frame):
            return
        if not edited:
            # The first edit may be one resent after a reconnect, and stored by another process
            # (or before a restart): recognise its ref from the log so as not to apply it twice.
            edited, ref = first_edit_ref(frame)
            if edited:
                await hub.recognise_ref(room, ref)
        handle_frame(room, connection, frame)

    await serve_socket(request, ws, note_id, connection, handle,
                       _since(request.args.get("since"), request.args.get("epoch")))


@bp.websocket("/yjs/<room_name:str>", ctx_socket=True)
@counts_close
async def yjs(request: Request, ws: WebsocketImplProtocol, room_name: str) -> None:
    """y-websocket's provider connects to ``serverUrl + "/" + roomname``: the note's id."""
    try:
        note_id: uuid.UUID | None = uuid.UUID(room_name)
    except ValueError:
        note_id = None
    access = await socket_access(request, ws, note_id)
    if access is None or note_id is None:
        return
    connection = _connection(request, ws, YJS, access)
    await serve_socket(request, ws, note_id, connection, _handle_yjs_frame)


def _handle_yjs_frame(room: Room, connection: SocketConnection, frame: Frame) -> None:
    if isinstance(frame, str):
        connection.close(CLOSE_INVALID, "text frames are not part of the Yjs protocol")
        return
    try:
        handle_message(room, connection, frame, connection.limit)
    except YjsRefused as refused:
        connection.close(refused.code, _close_reason(refused.reason))


def _connection(request: Request, ws: WebsocketImplProtocol, codec: Codec,
                access: Access) -> SocketConnection:
    settings = request.app.ctx.settings
    connection = SocketConnection(ws, _name(request), settings.ws_queue_size, codec, access,
                                  limit=rate_limit(settings.ws_rate, settings.ws_burst))
    _close_on_invalid_utf8(ws)
    return connection


CLOSE_INVALID_DATA = 1007


class _Utf8CheckedAssembler(WebsocketFrameAssembler):
    """A text frame that is not UTF-8 closes the socket with 1007. Sanic's frame assembler
    raises ``UnicodeDecodeError`` inside its reading task instead: the task dies, nothing more
    is read, and the socket and its handler stayed open for ever (no close, no ping timeout)."""

    __slots__ = ()

    async def put(self, frame: WireFrame) -> None:
        try:
            await super().put(frame)
        except UnicodeDecodeError:
            ws = self.protocol
            ws.fail_connection(CLOSE_INVALID_DATA, "a text frame that is not UTF-8")
            pending_recv = ws.recv_cancel  # (wake the handler: it leaves the room now)
            if pending_recv is not None and not pending_recv.done():
                pending_recv.cancel()


def _close_on_invalid_utf8(ws: WebsocketImplProtocol) -> None:
    ws.assembler.__class__ = _Utf8CheckedAssembler


def _close_reason(reason: str) -> str:
    """A close frame's reason holds at most 123 bytes of UTF-8."""
    return reason.encode()[:123].decode(errors="ignore")


FrameHandler = Callable[[Room, SocketConnection, Frame], Awaitable[None] | None]


async def serve_socket(request: Request, ws: WebsocketImplProtocol, note_id: uuid.UUID,
                       connection: SocketConnection, handle: FrameHandler,
                       since: Resume | None = None) -> None:
    """Take a slot of the socket quota (per note, user and address; else close 1013 before
    anything is sent), then serve the room; the same for every protocol."""
    quota: SocketQuota = request.app.ctx.socket_quota
    try:
        slot = quota.claim(note_id, connection.access.user_id, client_address(request))
    except TooManySockets as refused:
        await ws.close(CLOSE_TRY_LATER, refused.reason)
        return
    try:
        await _serve_room(request, ws, note_id, connection, handle, since)
    finally:
        quota.release(slot)


async def _serve_room(request: Request, ws: WebsocketImplProtocol, note_id: uuid.UUID,
                      connection: SocketConnection, handle: FrameHandler,
                      since: Resume | None) -> None:
    """Join the note's room, feed it the socket's frames, leave."""
    hub = request.app.ctx.hub
    if hub.closing:
        await ws.close(1001, "server shutting down")
        return
    try:
        room = await hub.connect(note_id, connection, since)
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
    await confirm_access(request, note_id, connection)
    try:
        while connection.close_code is None:
            frame = await ws.recv()
            if frame is None:
                break
            if hub.closing:
                continue  # not applied, not acknowledged: the client resends it elsewhere
            handled = handle(room, connection, frame)
            if handled is not None:
                await handled
    except (ConnectionClosed, WebsocketClosed):  # (Sanic's, once the socket is closed)
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
            writer = connection.writer  # (a close we started made one: it sends the close)
            if (writer is not None and connection.close_code is not None
                    and connection.close_code != CLOSE_SLOW_READER):
                with contextlib.suppress(asyncio.TimeoutError, ConnectionClosed):
                    await asyncio.wait_for(asyncio.shield(writer), timeout=5)
        finally:
            writer = connection.writer
            if writer is not None:
                writer.cancel()
        if writer is not None:
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed, Exception):
                await writer
