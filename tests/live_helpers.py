"""Helpers for the live-editing tests: async SQL, raw sockets, a recording LiveClient, typing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
from pycrdt import Doc, Text
from sqlalchemy import text
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from notes.client import LiveClient
from notes.collab.document import TEXT_NAME
from notes.store.database import make_engine

#: What the live tests type: accented Latin, CJK and an emoji outside the BMP.
ALPHABET = ["a", "b", "é", "漢", "😀", " ", "\n"]

# Unique characters for tests that count every typed character. A client's first 4000 come from
# two blocks of 2000 code points, alternating between CJK (BMP) and CJK Extension B (outside the
# BMP); the next OVERFLOW_BLOCK from a block of its own in planes 4-13 (each plane's last two code
# points, noncharacters, skipped). More than that fails loudly: a client that ran past its blocks
# into the next client's once made a long test report that client's characters as doubled.
UNIQUE_BLOCK = 2000
OVERFLOW_BLOCK = 12000
_PLANE_USABLE = 0xFFFE


def unique_char(client: int, n: int) -> str:
    if n < 2 * UNIQUE_BLOCK:
        base = 0x4E00 if n % 2 == 0 else 0x20000
        return chr(base + client * UNIQUE_BLOCK + n // 2)
    extra = n - 2 * UNIQUE_BLOCK
    if extra >= OVERFLOW_BLOCK:
        raise AssertionError(f"client {client} typed more than {2 * UNIQUE_BLOCK + OVERFLOW_BLOCK}"
                             " unique characters")
    index = client * OVERFLOW_BLOCK + extra
    plane = 4 + index // _PLANE_USABLE
    assert plane <= 13, f"no unique characters left for client {client}"
    return chr((plane << 16) + index % _PLANE_USABLE)


class Fresh:
    """An endless supply of characters nobody else types, remembering which were handed out."""

    def __init__(self, client: int):
        self.client = client
        self.used: list[str] = []

    def __iter__(self) -> Fresh:
        return self

    def __next__(self) -> str:
        char = unique_char(self.client, len(self.used))
        self.used.append(char)
        return char


def yjs_text(state: bytes) -> str:
    """The content stored in a note's Yjs state."""
    doc = Doc()
    doc.apply_update(state)
    return str(doc.get(TEXT_NAME, type=Text))


class Db:
    """Async reads and writes of the notes table, usable inside async tests."""

    def __init__(self, url: str):
        self.engine = make_engine(url, pool_size=2)

    async def row(self, note_id: object) -> Any:
        statement = text(
            "SELECT title, content, rev, version, yjs_state, refs, updated_at FROM notes"
            " WHERE id = :id"
        )
        async with self.engine.connect() as connection:
            result = await connection.execute(statement, {"id": uuid.UUID(str(note_id))})
            return result.one_or_none()

    async def execute(self, statement: str, **params: Any) -> None:
        async with self.engine.begin() as connection:
            await connection.execute(text(statement), params)

    async def wait_row(self, note_id: object, predicate: Callable[[Any], object],
                       timeout: float = 10.0, message: str = "the stored row") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            row = await self.row(note_id)
            if row is not None and predicate(row):
                return row
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {message}; "
                                     f"last row: {row and row._mapping}")
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        await self.engine.dispose()


class RecordingClient(LiveClient):
    """A LiveClient that keeps every message the server sent after each ``hello``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.messages: list[dict] = []
        self.hello_revs: list[int | None] = []
        self.sent: list[dict] = []
        self.hellos: list[dict] = []
        on_hello = self.state.on_hello

        def record_hello(msg: dict) -> list[dict]:
            self.hellos.append(msg)
            return on_hello(msg)

        self.state.on_hello = record_hello  # type: ignore[method-assign]

    async def _open(self) -> None:
        await super()._open()
        self.hello_revs.append(self.state.rev)
        self.messages.append({"type": "hello", "rev": self.state.rev})

    async def _handle(self, msg: dict) -> None:
        self.messages.append(msg)
        await super()._handle(msg)

    async def _send(self, message: dict | None) -> None:
        if message is not None and self.connected:
            self.sent.append(message)
        await super()._send(message)

    def revisions(self) -> list[int]:
        """The revision numbers seen after the first hello, as ack or edit, in order."""
        return [m["rev"] for m in self.messages if m["type"] in ("ack", "edit")]

    def of_type(self, kind: str) -> list[dict]:
        return [m for m in self.messages if m["type"] == kind]


async def connect_all(base_url: str, note_id: object, count: int, *, cls: type = LiveClient,
                      **kwargs: Any) -> list:
    return [await cls.connect(base_url, note_id, name=f"user{i}", **kwargs)
            for i in range(count)]


async def close_all(clients: list) -> None:
    for client in clients:
        await client.close()


async def wait_converged(clients: list, timeout: float = 15.0) -> str:
    """Wait until every client has everything acknowledged and all stand at one revision."""

    def done() -> bool:
        states = [c.state for c in clients]
        return (all(c.connected for c in clients)
                and all(s.awaiting is None and s.buffer is None for s in states)
                and len({s.rev for s in states}) == 1
                and len({s.text for s in states}) == 1)

    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            summary = [(c.name, c.connected, c.state.rev, c.state.awaiting is not None,
                        c.state.buffer is not None, len(c.text)) for c in clients]
            raise AssertionError(f"clients did not converge within {timeout}s: {summary}")
        await asyncio.sleep(0.01)
    return clients[0].text


async def type_randomly(client: LiveClient, rng: random.Random, count: int, *,
                        deletes: bool = True, chars: Iterator[str] | None = None,
                        alphabet: list[str] = ALPHABET) -> None:
    """``count`` local edits at random positions, without waiting for acks.

    With ``chars`` every insert takes fresh characters from it (so they can be counted later).
    """
    for _ in range(count):
        length = len(client.text)
        if deletes and length and rng.random() < 0.3:
            index = rng.randrange(length)
            await client.delete(index, rng.randint(1, min(3, length - index)))
        else:
            size = rng.randint(1, 3)
            inserted = ("".join(next(chars) for _ in range(size)) if chars is not None
                        else "".join(rng.choice(alphabet) for _ in range(size)))
            await client.insert(rng.randint(0, length), inserted)
        if rng.random() < 0.5:
            await asyncio.sleep(0)  # let the reader task take in remote edits now and then


class Raw:
    """A bare websocket speaking the protocol by hand, for error paths and exact message checks."""

    def __init__(self, ws: ClientConnection, hello: dict | None):
        self.ws = ws
        self.hello = hello

    @classmethod
    async def open(cls, base_url: str, note_id: object, name: str = "raw",
                   since: int | None = None, expect_hello: bool = True,
                   token: str | None = None, **kwargs: Any) -> Raw:
        url = base_url.replace("http://", "ws://") + f"/notes/{note_id}/live?name={name}"
        if since is not None:
            url += f"&since={since}"
        if token is not None:
            url += f"&token={token}"
        ws = await ws_connect(url, proxy=None, **kwargs)
        raw = cls(ws, None)
        if expect_hello:
            raw.hello = await raw.recv()
            assert raw.hello["type"] == "hello", raw.hello
        return raw

    @property
    def id(self) -> str:
        assert self.hello is not None
        return self.hello["client"]

    async def send(self, message: dict | str | bytes) -> None:
        if not isinstance(message, (str, bytes)):
            frame = json.dumps(message, ensure_ascii=False)
            try:
                frame.encode()
            except UnicodeEncodeError:  # a lone surrogate: only JSON escapes can carry it
                frame = json.dumps(message)
            message = frame
        await self.ws.send(message)

    async def recv(self, timeout: float = 5.0) -> dict:
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def next(self, *kinds: str, timeout: float = 5.0) -> dict:
        """The next message of one of ``kinds``, skipping others (join, presence, saved...)."""
        deadline = time.monotonic() + timeout
        while True:
            message = await self.recv(max(0.01, deadline - time.monotonic()))
            if message["type"] in kinds:
                return message

    async def closed(self, timeout: float = 5.0) -> tuple[int | None, list[dict]]:
        """Read until the server closes; the close code and the messages read on the way."""
        seen = []
        with contextlib.suppress(ConnectionClosed):
            async with asyncio.timeout(timeout):
                while True:
                    seen.append(json.loads(await self.ws.recv()))
        return self.ws.close_code, seen

    async def close(self) -> None:
        await self.ws.close()


async def create_note(client: httpx.AsyncClient, title: str = "live", content: str = "") -> str:
    response = await client.post("/notes", json={"title": title, "content": content})
    assert response.status_code == 201, response.text
    return response.json()["id"]
