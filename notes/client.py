"""A Python client for live editing (docs/protocol.md).

``ClientState`` is the classic OT client without any I/O: feed it server messages and local edits,
it keeps the local text in step and returns the messages to send. ``LiveClient`` drives one over a
websocket with the ``websockets`` library, and reconnects without losing local edits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from notes.collab.delta import (
    Delta,
    apply_delta,
    compose,
    diff,
    invert,
    normalize,
    parse_delta,
    transform,
    validate_delta,
)

CLOSE_NORMAL = 1000
CLOSE_TOO_BIG = 1009
CLOSE_NOTE_GONE = 4404
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
RATE_LIMITED_PAUSE = 1.0  # seconds before an edit refused as `rate_limited` is sent again
# Closes after which reconnecting would only be refused again.
REFUSED = (CLOSE_NOTE_GONE, CLOSE_TOO_BIG, CLOSE_UNAUTHENTICATED, CLOSE_FORBIDDEN)


def insert_delta(index: int, text: str) -> Delta:
    """The delta inserting ``text`` at code point ``index`` (empty if ``text`` is)."""
    if not text:
        return []
    return [{"retain": index}, {"insert": text}] if index else [{"insert": text}]


def delete_delta(index: int, count: int) -> Delta:
    """The delta deleting ``count`` code points from ``index`` (empty if ``count`` is 0)."""
    if not count:
        return []
    return [{"retain": index}, {"delete": count}] if index else [{"delete": count}]


class ClientState:
    """One client's view of a note: the server text at ``rev`` and the local edits on top.

    At most one edit is ``awaiting`` its ack, as ``(ref, delta)`` on ``server_text``; later local
    edits are composed into ``buffer`` (on the server text with the awaiting edit applied). Methods
    return the messages to send.
    """

    def __init__(self, session: str | None = None) -> None:
        self.session = session or secrets.token_hex(6)
        self._counter = 0
        self.client_id: str | None = None
        self.epoch: str | None = None  # whose revision numbers ``rev`` counts in
        self.rev: int | None = None
        self.server_text = ""
        self.text = ""
        self.awaiting: tuple[str, Delta] | None = None
        self.buffer: Delta | None = None

    # --- local edits ----------------------------------------------------------------------

    def local_edit(self, delta: Delta) -> dict | None:
        """Apply a local edit; return the edit message to send now, or None if it was buffered."""
        if self.rev is None:
            raise RuntimeError("no hello received yet")
        ops = validate_delta(delta)
        self.text = apply_delta(self.text, ops)
        ops = normalize(ops)
        if not ops:
            return None
        if self.awaiting is None:
            return self._await(ops)
        self.buffer = ops if self.buffer is None else compose(self.buffer, ops)
        return None

    def insert(self, index: int, text: str) -> dict | None:
        return self.local_edit(insert_delta(index, text))

    def delete(self, index: int, count: int) -> dict | None:
        return self.local_edit(delete_delta(index, count))

    @property
    def pending(self) -> Delta:
        """Everything not yet acknowledged, as one delta on ``server_text``."""
        awaiting = self.awaiting[1] if self.awaiting else []
        return compose(awaiting, self.buffer) if self.buffer else awaiting

    def _await(self, delta: Delta) -> dict:
        self._counter += 1
        self.awaiting = (f"{self.session}:{self._counter}", delta)
        return self.edit_message()

    def edit_message(self) -> dict | None:
        """The message (re)sending the awaiting edit, if there is one."""
        if self.awaiting is None:
            return None
        ref, delta = self.awaiting
        return {"type": "edit", "rev": self.rev, "delta": delta, "ref": ref}

    def _send_buffer(self) -> dict | None:
        buffer, self.buffer = self.buffer, None
        return self._await(buffer) if buffer else None

    # --- server messages ------------------------------------------------------------------

    def on_ack(self, msg: dict) -> dict | None:
        """Our awaiting edit became revision ``msg["rev"]``: send the buffer next.

        An ack that does not match the awaiting edit's ref is ignored. An ack at a revision we
        already have is the server recognising an edit it had applied before (it was resent
        after a reconnect, and the new server text holds it): the local copy is undone.
        """
        if self.awaiting is None or msg.get("ref") != self.awaiting[0]:
            return None
        if self.rev is not None and msg["rev"] <= self.rev:
            return self._drop_awaiting()
        self.server_text = apply_delta(self.server_text, self.awaiting[1])
        self.rev = msg["rev"]
        self.awaiting = None
        return self._send_buffer()

    def on_remote_edit(self, msg: dict) -> Delta:
        """Take in someone else's revision; return the delta applied to the local text."""
        incoming = parse_delta(msg["delta"])
        self.server_text = apply_delta(self.server_text, incoming)
        self.rev = msg["rev"]
        if self.awaiting is not None:
            ref, awaiting = self.awaiting
            self.awaiting = (ref, transform(awaiting, incoming, a_first=False))
            incoming = transform(incoming, awaiting, a_first=True)
        if self.buffer is not None:
            buffer = self.buffer
            self.buffer = transform(buffer, incoming, a_first=False) or None
            incoming = transform(incoming, buffer, a_first=True)
        self.text = apply_delta(self.text, incoming)
        return incoming

    def on_resync(self, msg: dict) -> dict | None:
        """Our awaiting edit was not applied (its base is too old): rebase onto ``content``.

        A resync for anything but the awaiting edit changes nothing here.
        """
        if self.awaiting is None or msg.get("ref") != self.awaiting[0]:
            return None
        return self._rebase(msg["rev"], msg["content"])

    def on_error(self, msg: dict) -> dict | None:
        """If the server rejected our awaiting edit, undo it locally and send the buffer instead
        (but for ``rate_limited``: it is kept, to be sent again later, ``edit_message``)."""
        if self.awaiting is None or msg.get("ref") != self.awaiting[0]:
            return None
        if msg.get("code") == "rate_limited":
            return None
        return self._drop_awaiting()

    def _drop_awaiting(self) -> dict | None:
        """Undo the awaiting edit locally (keeping the buffer) and send the buffer instead."""
        assert self.awaiting is not None
        undo = invert(self.awaiting[1], self.server_text)
        self.awaiting = None
        if self.buffer is not None:
            self.buffer, undo = (
                transform(self.buffer, undo, a_first=True) or None,
                transform(undo, self.buffer, a_first=False),
            )
        self.text = apply_delta(self.text, undo)
        return self._send_buffer()

    def on_hello(self, msg: dict) -> list[dict]:
        """Start (first hello) or resume (after a reconnect); return the messages to send."""
        self.client_id = msg["client"]
        resumed = "missed" in msg and msg.get("since") == self.rev and self.epoch is not None
        self.epoch = msg.get("epoch")
        if self.rev is None:
            self.rev = msg["rev"]
            self.server_text = self.text = msg["content"]
            return []
        if resumed:
            self._replay(msg["missed"])
        if self.rev != msg["rev"] or self.server_text != msg["content"]:
            # Another process, or the history does not reach back: rebase by diff. The awaiting
            # edit is resent with its ref; if the server had stored it, the server's duplicate
            # ack (at a revision we have) undoes the local copy.
            message = self._rebase(msg["rev"], msg["content"])
        else:
            message = self.edit_message() if self.awaiting is not None else self._send_buffer()
        return [message] if message else []

    def _replay(self, missed: list[dict]) -> None:
        for entry in missed:
            if self.awaiting is not None and entry.get("ref") == self.awaiting[0]:
                self.on_ack(entry)  # the buffer becomes the awaiting edit, sent after the replay
            else:
                self.on_remote_edit(entry)

    def _rebase(self, rev: int, content: str) -> dict | None:
        """Rebase the pending local edits onto ``content`` at ``rev``: the diff of the server
        texts is taken in as a remote edit. The awaiting edit keeps its ref; the message to
        send (it again, else the buffer) is returned."""
        self.on_remote_edit({"rev": rev, "delta": diff(self.server_text, content)})
        return self.edit_message() if self.awaiting is not None else self._send_buffer()


class LiveClosed(ConnectionError):
    """The server closed the socket before its hello (4404: no such note)."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(f"the server closed the connection ({code} {reason})".strip())
        self.code = code


def _live_url(base_url: str, note_id: object, name: str, since: int | None,
              epoch: str | None = None, token: str | None = None) -> str:
    scheme, netloc, path, _, _ = urlsplit(base_url)
    scheme = {"http": "ws", "https": "wss"}.get(scheme, scheme)
    query: dict[str, object] = {"name": name}
    if token is not None:
        query["token"] = token
    if since is not None:
        query["since"] = since
        if epoch is not None:
            query["epoch"] = epoch
    path = f"{path.rstrip('/')}/notes/{note_id}/live"
    return urlunsplit((scheme, netloc, path, urlencode(query), ""))


class LiveClient:
    """A live connection to one note, kept in step by a reader task.

    Use ``await LiveClient.connect(...)``. State changes wake ``wait_for``; edits made while the
    connection is down are kept and sent after the reconnect.
    """

    def __init__(self, base_url: str, note_id: object, name: str, reconnect: bool,
                 token: str | None = None) -> None:
        self.base_url, self.note_id, self.name = base_url, note_id, name
        self.reconnect = reconnect
        self.token = token  # an API token (accounts on): sent as ``?token=``
        self.state = ClientState()
        self.title: str | None = None
        self.peers: dict[str, dict] = {}
        self.saved_rev: int | None = None
        self.errors: list[dict] = []
        self.deleted = False
        self.connected = False
        self.closed_code: int | None = None
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task | None = None
        self._closing = False
        self._finished = False
        self._changed = asyncio.Event()

    @classmethod
    async def connect(
        cls, base_url: str, note_id: object, name: str = "anonymous", reconnect: bool = True,
        token: str | None = None,
    ) -> LiveClient:
        """Connect and wait for ``hello``; LiveClosed if the server refuses (4404: no such note
        or not yours, 4401: no valid token, 4403: access revoked)."""
        client = cls(base_url, note_id, name, reconnect, token)
        await client._open()
        client._reader = asyncio.create_task(client._run(), name=f"notes.client:{note_id}")
        return client

    # --- state --------------------------------------------------------------------------------

    @property
    def text(self) -> str:
        return self.state.text

    @property
    def rev(self) -> int | None:
        return self.state.rev

    @property
    def client_id(self) -> str | None:
        return self.state.client_id

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10) -> None:
        """Wait until ``predicate()`` holds; TimeoutError, or LiveClosed once the client ended."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if self._finished:
                raise LiveClosed(self.closed_code, "while waiting")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {timeout} s")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def synced(self, timeout: float = 10) -> None:
        """Wait until every local edit is acknowledged."""
        state = self.state
        await self.wait_for(
            lambda: self.connected and state.awaiting is None and state.buffer is None, timeout
        )

    # --- sending ------------------------------------------------------------------------------

    async def _send(self, message: dict | None) -> None:
        if message is None or not self.connected or self._ws is None:
            return
        with contextlib.suppress(ConnectionClosed):
            await self._ws.send(json.dumps(message, ensure_ascii=False))

    async def edit(self, delta: Delta) -> None:
        message = self.state.local_edit(delta)
        self._notify()
        await self._send(message)

    async def insert(self, index: int, text: str) -> None:
        await self.edit(insert_delta(index, text))

    async def delete(self, index: int, count: int) -> None:
        await self.edit(delete_delta(index, count))

    async def set_title(self, title: str) -> None:
        self.title = title
        await self._send({"type": "title", "title": title})

    async def set_cursor(self, cursor: dict | None) -> None:
        """Share a cursor ``{"index", "length"}`` (or None), as of the last server revision."""
        await self._send({"type": "presence", "rev": self.state.rev, "cursor": cursor})

    # --- connection ---------------------------------------------------------------------------

    async def _open(self) -> None:
        url = _live_url(self.base_url, self.note_id, self.name, self.state.rev,
                        self.state.epoch, self.token)
        ws = await ws_connect(url, max_size=2**26, proxy=None)
        try:
            hello = json.loads(await ws.recv())
        except ConnectionClosed:
            self.closed_code = ws.close_code
            raise LiveClosed(ws.close_code, ws.close_reason or "") from None
        except BaseException:
            ws.transport.abort()
            raise
        if hello.get("type") != "hello" or self._closing:
            await ws.close()
            raise LiveClosed(CLOSE_NORMAL, f"closing, or not a hello: {hello.get('type')!r}")
        self._ws, self.connected, self.closed_code = ws, True, None
        messages = self.state.on_hello(hello)
        self.title = hello.get("title")
        self.peers = {
            peer["client"]: {"name": peer.get("name"), "cursor": peer.get("cursor")}
            for peer in hello.get("peers", [])
        }
        self._notify()
        for message in messages:
            await self._send(message)

    async def _run(self) -> None:
        try:
            while True:
                ws = self._ws
                assert ws is not None
                with contextlib.suppress(ConnectionClosed):
                    async for frame in ws:
                        await self._handle(json.loads(frame))
                self.connected = False
                self.closed_code = ws.close_code
                self._notify()
                if not self._should_reconnect() or not await self._reconnect():
                    return
        finally:
            self.connected = False
            self._finished = True
            self._notify()

    def _should_reconnect(self) -> bool:
        gone = self.deleted or self.closed_code in REFUSED
        return self.reconnect and not self._closing and not gone

    async def _reconnect(self) -> bool:
        """Reconnect with exponential backoff; False if the note is gone or we are closing."""
        delay = 0.05
        while not self._closing:
            try:
                await self._open()
                return True
            except LiveClosed as closed:
                if closed.code in REFUSED:
                    self.closed_code = closed.code
                    return False
            except (OSError, asyncio.TimeoutError, WebSocketException):
                pass
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        return False

    async def _handle(self, msg: dict) -> None:
        kind = msg.get("type")
        state = self.state
        if kind == "ack":
            await self._send(state.on_ack(msg))
        elif kind == "edit":
            state.on_remote_edit(msg)
        elif kind == "resync":
            await self._send(state.on_resync(msg))
        elif kind == "error":
            self.errors.append(msg)
            await self._send(state.on_error(msg))
            if msg.get("code") == "rate_limited":
                await self._resend_later(msg)
        elif kind == "presence":
            self.peers[msg["client"]] = {"name": msg.get("name"), "cursor": msg.get("cursor")}
        elif kind == "join":
            self.peers[msg["client"]] = {"name": msg.get("name"), "cursor": None}
        elif kind == "leave":
            self.peers.pop(msg["client"], None)
        elif kind == "title":
            self.title = msg["title"]
        elif kind == "saved":
            self.saved_rev = msg["rev"]
        elif kind == "deleted":
            self.deleted = True
        self._notify()

    async def _resend_later(self, msg: dict) -> None:
        """Our awaiting edit came too fast and was not applied: pause, then send it again.
        (Reading pauses too; the server's messages wait in the socket meanwhile.)"""
        awaiting = self.state.awaiting
        if awaiting is None or msg.get("ref") != awaiting[0]:
            return
        await asyncio.sleep(RATE_LIMITED_PAUSE)
        if self.state.awaiting is awaiting:
            await self._send(self.state.edit_message())

    def drop(self) -> None:
        """Abort the transport without a close handshake (a lost connection, for tests)."""
        if self._ws is not None:
            self._ws.transport.abort()

    async def close(self) -> None:
        """Close normally and stop the reader (no reconnect)."""
        self._closing = True
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def __aenter__(self) -> LiveClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
