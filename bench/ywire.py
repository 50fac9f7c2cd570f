"""y-protocols over binary websocket frames, client side, for the Yjs benchmarks.

A message is ``varUint(type)`` and its payload: type 0 is sync (``varUint(subtype)``: 0 = step 1
with a state vector, 1 = step 2 with an update, 2 = an update; then a ``varUint8Array``), 1 is
awareness (a ``varUint8Array``), 3 is a query for awareness. Two dialects:

* :class:`Wire`, y-websocket's (the npm y-websocket server, pycrdt-websocket, notes' ``/yjs``):
  the message is the frame; the room is the URL path.
* :class:`HocuspocusWire`: every message, both ways, starts with the document name as a
  ``varString`` (the URL names no document), types 2 (auth), 4 (sync reply), 7 (close) and
  8 (sync status) are added, and the client must authenticate (type 2, ``Token``) before the
  server answers anything else about that document.

Both clients here (:class:`Subscriber` and :class:`Writer`) run on the same
:class:`bench.wsclient.WsClient` and send the same bytes whatever the server, apart from the
dialect's prefix and Hocuspocus's auth message. A subscriber does not decode Yjs: it answers the
server's step 1 with an empty step 2 (``00 00``: no structs, no deletes), sends its own step 1
with an empty state vector (``00``), counts as synced on the server's step 2, and afterwards
finds the writer's latency markers ``<tSEQ.NS>`` in the raw frames (the characters of an
inserted string appear verbatim, UTF-8, in a Yjs v1 update).
"""

from __future__ import annotations

import asyncio
import re
import time
from array import array

from bench.wsclient import WsClient
from notes.collab.lib0 import Reader
from notes.collab.lib0 import write_bytes as write_var_bytes
from notes.collab.lib0 import write_string as write_var_string
from notes.collab.lib0 import write_uint as write_var_uint

MSG_SYNC = 0
MSG_AWARENESS = 1
MSG_AUTH = 2
MSG_QUERY_AWARENESS = 3
SYNC_STEP1 = 0
SYNC_STEP2 = 1
SYNC_UPDATE = 2
# Hocuspocus only (@hocuspocus/server's MessageType, @hocuspocus/common's AuthMessageType)
HP_SYNC_REPLY = 4
HP_CLOSE = 7
HP_SYNC_STATUS = 8
HP_AUTH_TOKEN = 0
HP_AUTH_PERMISSION_DENIED = 1
HP_AUTH_AUTHENTICATED = 2
#: what the matching @hocuspocus/provider sends after its token (the server only stores it)
HP_PROVIDER_VERSION = "4.8.0"

EMPTY_STATE_VECTOR = b"\x00"
EMPTY_UPDATE = b"\x00\x00"

MARKER = re.compile(rb"<t(\d+)\.(\d+)>")
TEXT_NAME = "content"  # the Yjs Text of a note (notes.collab.document.TEXT_NAME)


def marker(seq: int) -> str:
    return f"<t{seq}.{time.time_ns()}>"


# --- lib0 encoding (the server's own codec, notes.collab.lib0) --------------------------------


def read_var_uint(buf: bytes, pos: int = 0) -> tuple[int, int]:
    """(value, position after it)."""
    reader = Reader(buf, pos)
    return reader.uint(), reader.pos


def read_var_bytes(buf: bytes, pos: int = 0) -> tuple[bytes, int]:
    reader = Reader(buf, pos)
    return reader.bytes(), reader.pos


def read_var_string(buf: bytes, pos: int = 0) -> tuple[str, int]:
    reader = Reader(buf, pos)
    return reader.string(), reader.pos


# --- dialects -----------------------------------------------------------------------------------


class Wire:
    """y-websocket's framing: a message is a frame, the URL path names the document."""

    kind = "y-websocket"

    def __init__(self, path: str):
        self.path = path
        self.prefix = b""

    def opening(self) -> list[bytes]:
        """What a client sends once the socket is open: its sync step 1 (empty state vector)."""
        return [self.sync(SYNC_STEP1, EMPTY_STATE_VECTOR)]

    def sync(self, subtype: int, data: bytes) -> bytes:
        return self.prefix + write_var_uint(MSG_SYNC) + write_var_uint(subtype) + \
            write_var_bytes(data)

    def parse(self, frame: bytes) -> tuple[int, int, int]:
        """(message type, sync subtype or -1, position of the rest) of a server frame."""
        pos = self.skip_prefix(frame)
        kind, pos = read_var_uint(frame, pos)
        if kind in (MSG_SYNC, HP_SYNC_REPLY):
            subtype, pos = read_var_uint(frame, pos)
            return MSG_SYNC, subtype, pos
        return kind, -1, pos

    def skip_prefix(self, frame: bytes) -> int:
        return 0

    def other(self, kind: int, frame: bytes, pos: int) -> None:
        """A server message that is neither sync nor awareness; raise if it ends the session."""


class HocuspocusWire(Wire):
    """Hocuspocus's framing: the document name (varString) before every message, auth first."""

    kind = "hocuspocus"

    def __init__(self, path: str, document: str, token: str = ""):
        super().__init__(path)
        self.document = document
        self.token = token
        self.prefix = write_var_string(document)
        self.authenticated: str | None = None

    def opening(self) -> list[bytes]:
        # As @hocuspocus/provider does on open: the token (Auth/Token, token, provider version),
        # then sync step 1; the server queues the step 1 until onAuthenticate has passed.
        auth = (self.prefix + write_var_uint(MSG_AUTH) + write_var_uint(HP_AUTH_TOKEN)
                + write_var_string(self.token) + write_var_string(HP_PROVIDER_VERSION))
        return [auth] + super().opening()

    def skip_prefix(self, frame: bytes) -> int:
        if frame.startswith(self.prefix):
            return len(self.prefix)
        name, pos = read_var_string(frame, 0)
        raise ValueError(f"a message for document {name!r}, expected {self.document!r}")

    def other(self, kind: int, frame: bytes, pos: int) -> None:
        if kind == MSG_AUTH:
            sub, pos = read_var_uint(frame, pos)
            if sub == HP_AUTH_PERMISSION_DENIED:
                raise PermissionError(f"hocuspocus: permission denied: "
                                      f"{read_var_string(frame, pos)[0]}")
            if sub == HP_AUTH_AUTHENTICATED:
                self.authenticated = read_var_string(frame, pos)[0]
        elif kind == HP_CLOSE:
            raise ConnectionError(f"hocuspocus closed the document: "
                                  f"{read_var_string(frame, pos)[0]}")


def make_wire(kind: str, path: str, document: str) -> Wire:
    return HocuspocusWire(path, document) if kind == "hocuspocus" else Wire(path)


class YjsSocket(WsClient):
    """A :class:`WsClient` that sends binary frames (y-protocols wants binary messages)."""

    @classmethod
    async def open_for(cls, owner, port: int, path: str, timeout: float = 60.0,
                       host: str = "127.0.0.1") -> YjsSocket:
        """Connect for ``owner`` (its ``on_message`` gets the frames); ``owner.ws`` is set
        before the first frame arrives, since a server may send its sync step 1 in the same
        packet as its handshake answer."""
        loop = asyncio.get_running_loop()

        def factory() -> YjsSocket:
            owner.ws = cls(host, port, path, owner.on_message)
            return owner.ws

        _, sock = await asyncio.wait_for(loop.create_connection(factory, host, port), timeout)
        await asyncio.wait_for(asyncio.shield(sock.opened), timeout)
        return sock

    def send_binary(self, data: bytes) -> None:
        self._send_frame(0x82, data)


# --- clients ------------------------------------------------------------------------------------


async def open_synced(client, port: int, timeout: float) -> None:
    """Connect ``client`` (a Subscriber or Writer), send the dialect's opening and wait for the
    server's sync step 2 (``client.synced``, set by its ``on_message``)."""
    client.synced = asyncio.get_running_loop().create_future()
    await YjsSocket.open_for(client, port, client.wire.path, timeout)
    for frame in client.wire.opening():
        client.ws.send_binary(frame)
    done, _ = await asyncio.wait([client.synced, client.ws.closed], timeout=timeout,
                                 return_when=asyncio.FIRST_COMPLETED)
    if client.synced in done:
        return
    client.ws.abort()
    if client.error:
        raise ConnectionError(client.error)
    if client.ws.closed.done():
        raise ConnectionError(f"closed before sync step 2 (close code {client.ws.close_code})")
    raise TimeoutError(f"no sync step 2 within {timeout} s")


class Subscriber:
    """A read-only Yjs peer that does not keep the document: it syncs from empty and times the
    writer's markers it finds in each sync frame."""

    def __init__(self, wire: Wire):
        self.wire = wire
        self.ws: YjsSocket | None = None
        self.synced: asyncio.Future | None = None
        self.join_ns = 0
        self.lat = array("q")
        self.seen = bytearray()  # one byte per marker seq: received (1) or not (0)
        self.markers = 0
        self.duplicates = 0
        self.last_ns = 0
        self.frames = 0
        self.sync_frames = 0
        self.other_frames = 0
        self.error: str | None = None

    async def open(self, port: int, timeout: float = 60.0) -> Subscriber:
        t0 = time.time_ns()
        await open_synced(self, port, timeout)
        self.join_ns = self.synced.result() - t0
        return self

    def on_message(self, payload: bytes, now: int) -> None:
        self.frames += 1
        try:
            kind, subtype, pos = self.wire.parse(payload)
            if kind == MSG_SYNC:
                self.sync_frames += 1
                if subtype == SYNC_STEP1:
                    self.ws.send_binary(self.wire.sync(SYNC_STEP2, EMPTY_UPDATE))
                    return
                for m in MARKER.finditer(payload, pos):
                    self._mark(int(m.group(1)), int(m.group(2)), now)
                if subtype == SYNC_STEP2 and not self.synced.done():
                    self.synced.set_result(now)
            else:
                self.other_frames += 1
                self.wire.other(kind, payload, pos)
        except Exception as error:  # noqa: BLE001 - reported, and the socket closed
            self.error = f"{type(error).__name__}: {error}"
            self.ws.abort()

    def _mark(self, seq: int, sent_ns: int, now: int) -> None:
        seen = self.seen
        if seq >= len(seen):
            seen.extend(bytes(seq + 1024 - len(seen)))
        if seen[seq]:
            self.duplicates += 1
            return
        seen[seq] = 1
        self.markers += 1
        self.lat.append(now - sent_ns)
        self.last_ns = now

    @property
    def open_now(self) -> bool:
        return self.ws is not None and self.ws.is_open

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code if self.ws else None


class Writer:
    """One Yjs peer that types: a pycrdt ``Doc`` synced with the server, one update (one
    transaction, one ``<tSEQ.NS>`` marker appended to the ``content`` Text) per keystroke."""

    def __init__(self, wire: Wire):
        from pycrdt import Doc, Text

        self.wire = wire
        self.doc = Doc()
        self.text = self.doc.get(TEXT_NAME, type=Text)
        self.length = 0
        self.ws: YjsSocket | None = None
        self.synced: asyncio.Future | None = None
        self._local: list[bytes] = []
        self._capture = False
        self.doc.observe(self._on_transaction)
        self.frames_in = 0
        self.echoes = 0  # frames back from the server that carry one of our markers
        self.statuses = 0  # Hocuspocus's sync-status answers to our updates
        self.bytes_out = 0
        self.error: str | None = None

    def _on_transaction(self, event) -> None:
        if self._capture:
            self._local.append(event.update)

    async def open(self, port: int, timeout: float = 60.0) -> Writer:
        await open_synced(self, port, timeout)
        return self

    def on_message(self, payload: bytes, now: int) -> None:
        self.frames_in += 1
        try:
            kind, subtype, pos = self.wire.parse(payload)
            if kind == MSG_SYNC:
                if subtype == SYNC_STEP1:
                    state_vector, _ = read_var_bytes(payload, pos)
                    self.ws.send_binary(self.wire.sync(SYNC_STEP2,
                                                       self.doc.get_update(state_vector)))
                elif not self.synced.done():
                    if subtype == SYNC_STEP2:
                        update, _ = read_var_bytes(payload, pos)
                        self.doc.apply_update(update)
                        self.length = len(self.text)
                        self.synced.set_result(now)
                elif MARKER.search(payload, pos):
                    self.echoes += 1
            elif kind == HP_SYNC_STATUS:
                self.statuses += 1
            else:
                self.wire.other(kind, payload, pos)
        except Exception as error:  # noqa: BLE001 - reported, and the socket closed
            self.error = f"{type(error).__name__}: {error}"
            self.ws.abort()

    def type_marker(self, seq: int) -> None:
        """Append one marker in one transaction and send that transaction's update."""
        token = marker(seq)
        self._capture = True
        try:
            self.text.insert(self.length, token)
        finally:
            self._capture = False
        self.length += len(token)
        for update in self._local:
            frame = self.wire.sync(SYNC_UPDATE, update)
            self.bytes_out += len(frame)
            self.ws.send_binary(frame)
        self._local.clear()

    @property
    def value(self) -> str:
        return str(self.text)


async def fetch_text(port: int, wire: Wire, timeout: float = 30.0) -> str:
    """The ``content`` Text as the server holds it: a fresh peer's sync step 2, decoded."""
    from pycrdt import Doc, Text

    fetch = _Fetch(wire)
    ws = await YjsSocket.open_for(fetch, port, wire.path, timeout)
    try:
        for frame in wire.opening():
            ws.send_binary(frame)
        done, _ = await asyncio.wait([fetch.got, ws.closed], timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        if fetch.got not in done:
            raise ConnectionError(f"no sync step 2 for the check (close code {ws.close_code})")
        doc = Doc()
        doc.apply_update(fetch.got.result())
        return str(doc.get(TEXT_NAME, type=Text))
    finally:
        await ws.close()


class _Fetch:
    def __init__(self, wire: Wire):
        self.wire = wire
        self.ws: YjsSocket | None = None
        self.got: asyncio.Future = asyncio.get_running_loop().create_future()

    def on_message(self, payload: bytes, now: int) -> None:
        try:
            kind, subtype, pos = self.wire.parse(payload)
            if kind == MSG_SYNC and subtype == SYNC_STEP1:
                self.ws.send_binary(self.wire.sync(SYNC_STEP2, EMPTY_UPDATE))
            elif kind == MSG_SYNC and subtype == SYNC_STEP2 and not self.got.done():
                self.got.set_result(read_var_bytes(payload, pos)[0])
            elif kind != MSG_SYNC:
                self.wire.other(kind, payload, pos)
        except Exception as error:  # noqa: BLE001 - passed on
            if not self.got.done():
                self.got.set_exception(error)
