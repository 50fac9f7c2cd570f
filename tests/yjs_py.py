"""Python Yjs clients for the tests: pycrdt's own ``Provider`` over a websocket, and raw frames.

``PyYjsClient`` is the "Python client built on pycrdt": an unmodified ``pycrdt.Provider`` syncing a
``pycrdt.Doc`` through a websocket channel. ``RawYjs`` sends hand-made frames (for bad input) and
reads the server's messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from pycrdt import Doc, Provider, Text
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from notes.collab.lib0 import Reader
from notes.collab.yjs import MESSAGE_SYNC, SYNC_STEP1, SYNC_STEP2, SYNC_UPDATE, sync_message


def yjs_url(ws_base: str, note_id: object, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"{ws_base}/yjs/{note_id}" + (f"?{query}" if query else "")


class WebsocketChannel:
    """A pycrdt ``Channel`` over a websockets connection (sync messages only)."""

    def __init__(self, ws: ClientConnection, path: str):
        self.ws = ws
        self._path = path

    @property
    def path(self) -> str:
        return self._path

    def __aiter__(self) -> WebsocketChannel:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.recv()
        except ConnectionClosed:
            raise StopAsyncIteration from None

    async def send(self, message: bytes) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(message)

    async def recv(self) -> bytes:
        while True:
            message = await self.ws.recv()
            if isinstance(message, bytes) and message[:1] == bytes((MESSAGE_SYNC,)):
                return message


class PyYjsClient:
    """A pycrdt document kept in sync with a note by ``pycrdt.Provider``."""

    def __init__(self, ws_base: str, note_id: object, doc: Doc | None = None):
        self.url = yjs_url(ws_base, note_id)
        self.doc = doc or Doc()
        self.content = self.doc.get("content", type=Text)
        self.title = self.doc.get("title", type=Text)
        self._stack = contextlib.AsyncExitStack()
        self.ws: ClientConnection | None = None

    async def __aenter__(self) -> PyYjsClient:
        self.ws = await self._stack.enter_async_context(ws_connect(self.url, proxy=None))
        provider = Provider(self.doc, WebsocketChannel(self.ws, self.url))
        await self._stack.enter_async_context(provider)
        await asyncio.wait_for(provider.synced.wait(), 10)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    async def wait_content(self, expected: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while str(self.content) != expected:
            if time.monotonic() > deadline:
                raise AssertionError(f"content {str(self.content)!r} != {expected!r}")
            await asyncio.sleep(0.01)


class RawYjs:
    """A bare websocket on ``/yjs/{id}``: frames by hand, the server's messages decoded."""

    def __init__(self, ws: ClientConnection):
        self.ws = ws
        self.doc = Doc()  # what the server sent, applied

    @classmethod
    async def open(cls, ws_base: str, note_id: object, **kwargs: Any) -> RawYjs:
        return cls(await ws_connect(yjs_url(ws_base, note_id), proxy=None, **kwargs))

    async def handshake(self) -> RawYjs:
        """Answer the server's step 1, send ours, wait for its step 2: the document is here."""
        await self.ws.send(sync_message(SYNC_STEP1, b"\x00"))
        while True:
            kind, step, payload = await self.recv()
            if kind == MESSAGE_SYNC and step == SYNC_STEP1:
                await self.ws.send(sync_message(SYNC_STEP2, self.doc.get_update(payload)))
            elif kind == MESSAGE_SYNC and step == SYNC_STEP2:
                return self

    async def recv(self, timeout: float = 5.0) -> tuple[int, int | None, bytes]:
        """The next message as (type, sync step or None, payload); sync updates are applied."""
        frame = await asyncio.wait_for(self.ws.recv(), timeout)
        reader = Reader(frame)
        kind = reader.uint()
        step = reader.uint() if kind == MESSAGE_SYNC else None
        payload = b"" if reader.at_end() else reader.bytes()
        if step in (SYNC_STEP2, SYNC_UPDATE):
            self.doc.apply_update(payload)
        return kind, step, payload

    def text(self, name: str = "content") -> str:
        return str(self.doc.get(name, type=Text))

    async def send(self, frame: bytes | str) -> None:
        await self.ws.send(frame)

    async def closed(self, timeout: float = 5.0) -> tuple[int | None, str]:
        """Read until the server closes; its close code and reason."""
        with contextlib.suppress(ConnectionClosed):
            async with asyncio.timeout(timeout):
                while True:
                    await self.ws.recv()
        return self.ws.close_code, self.ws.close_reason or ""

    async def close(self) -> None:
        await self.ws.close()
