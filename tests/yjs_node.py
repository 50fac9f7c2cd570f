"""A real JavaScript Yjs client for the tests: ``node tests/yjs/client.mjs``, driven from asyncio.

Each :class:`NodeYjsClient` is one node process holding one ``Y.Doc`` and (after ``connect``) one
y-websocket ``WebsocketProvider``. Commands go to it as JSON lines and each gets one reply; the
process also reports events (``status``, ``sync``, ``close``, ``closed``, ``connection_error``,
``awareness``, ``update``, ``console``, ``uncaught``), which are recorded in
:attr:`NodeYjsClient.events` and can be awaited with :meth:`NodeYjsClient.wait_event`.
Text indexes are JavaScript UTF-16 code units. Node's stderr goes to
``test-artifacts/yjs-<name>-….log``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"  # as in conftest.py
CLIENT_JS = ROOT / "tests" / "yjs" / "client.mjs"

Event = dict[str, Any]
_log_numbers = itertools.count(1)


class YjsError(Exception):
    """The node client answered a command with an error."""


class NodeYjsClient:
    def __init__(self, name: str = "yjs"):
        self.name = name
        self.events: list[Event] = []
        self.log_path = ARTIFACTS / f"yjs-{name}-{os.getpid()}-{next(_log_numbers)}.log"
        self.client_id: int | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task | None = None
        self._replies: dict[int, asyncio.Future] = {}
        self._ids = itertools.count(1)
        self._changed = asyncio.Event()
        self._exited: str | None = None  # why the process can no longer answer

    # -- process -------------------------------------------------------------------------------

    async def start(self) -> NodeYjsClient:
        ARTIFACTS.mkdir(exist_ok=True)
        with open(self.log_path, "ab") as log:
            try:
                self._process = await asyncio.create_subprocess_exec(
                    "node", str(CLIENT_JS), cwd=ROOT, stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE, stderr=log,
                    limit=64 * 1024 * 1024,  # a reply carries whole documents (text, encode_state)
                )
            except FileNotFoundError:
                raise RuntimeError("node is not installed; `bash scripts/test` installs it and "
                                   "the npm packages") from None
        self._reader = asyncio.create_task(self._read(), name=f"yjs-{self.name}-reader")
        self.client_id = (await self.call("info"))["client_id"]
        return self

    async def close(self, timeout: float = 5.0) -> None:
        """End the process: stdin EOF makes it destroy the provider and exit."""
        process = self._process
        if process is None:
            return
        self._process = None
        if process.returncode is None:
            with contextlib.suppress(OSError):
                assert process.stdin is not None
                process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()
        if self._reader is not None:
            await self._reader

    async def __aenter__(self) -> NodeYjsClient:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        stdout = self._process.stdout
        while line := await stdout.readline():
            try:
                message = json.loads(line)
            except ValueError:  # something in node printed to stdout
                message = {"event": "stdout", "line": line.decode(errors="replace")}
            if "event" in message:
                self.events.append(message)
                self._changed.set()
                self._changed = asyncio.Event()
            else:
                future = self._replies.pop(message["id"], None)
                if future is not None and not future.done():
                    future.set_result(message)
        self._exited = f"the node client {self.name!r} exited; see {self.log_path}"
        for future in self._replies.values():
            if not future.done():
                future.set_exception(RuntimeError(self._exited + "\n" + self.log()[-3000:]))
        self._replies.clear()
        self._changed.set()

    # -- commands ------------------------------------------------------------------------------

    async def call(self, op: str, /, *, reply_timeout: float = 30.0, **args: Any) -> Any:
        """Send one command and return its result; :class:`YjsError` if it failed in node."""
        if self._exited is not None or self._process is None:
            raise RuntimeError(self._exited or f"the node client {self.name!r} is not running")
        command_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._replies[command_id] = future
        assert self._process.stdin is not None
        # json.dumps escapes non-ASCII, so lone surrogates travel as \udXXX escapes too
        line = json.dumps({"id": command_id, "op": op, **args}).encode() + b"\n"
        try:
            self._process.stdin.write(line)
            await self._process.stdin.drain()
            reply = await asyncio.wait_for(future, reply_timeout)
        except (BrokenPipeError, ConnectionResetError):
            raise RuntimeError(f"the node client {self.name!r} exited; see {self.log_path}\n"
                               + self.log()[-3000:]) from None
        except asyncio.TimeoutError:
            raise AssertionError(f"{self.name}: no reply to {op} within {reply_timeout}s; "
                                 f"see {self.log_path}") from None
        finally:
            self._replies.pop(command_id, None)
        if "error" in reply:
            raise YjsError(f"{self.name}: {op} failed: {reply['error']}")
        return reply["result"]

    async def connect(self, url: str, room: str, params: dict[str, str] | None = None,
                      max_backoff_ms: int | None = None) -> dict:
        """Create the provider for ``{url}/{room}?{params}`` and start connecting (not waiting)."""
        args: dict[str, Any] = {"url": url, "room": str(room), "params": params or {}}
        if max_backoff_ms is not None:
            args["maxBackoffTime"] = max_backoff_ms
        return await self.call("connect", **args)

    async def wait_synced(self, timeout: float = 10.0) -> None:
        await self.call("wait_synced", timeout=timeout, reply_timeout=timeout + 5)

    async def insert(self, index: int, text: str, type: str = "content") -> None:
        """Insert at a UTF-16 index, which may split a surrogate pair (Yjs then turns both halves
        into U+FFFD); an index beyond the text is a :class:`YjsError` (Yjs itself would clamp)."""
        await self.call("insert", index=index, text=text, type=type)

    async def delete(self, index: int, length: int, type: str = "content") -> None:
        await self.call("delete", index=index, length=length, type=type)

    async def text(self) -> dict[str, str]:
        """``{"content": …, "title": …}`` as this client's doc has them now."""
        return await self.call("text")

    async def content(self) -> str:
        return (await self.text())["content"]

    async def random_edits(self, count: int, seed: int = 1, alphabet: list[str] | None = None,
                           delay_ms: float = 0, type: str = "content") -> dict:
        """``count`` seeded random inserts and deletes at code point boundaries.

        Returns ``{"inserts", "deletes", "length"}`` (length in UTF-16 units).
        """
        args: dict[str, Any] = {"count": count, "seed": seed, "delay_ms": delay_ms, "type": type}
        if alphabet is not None:
            args["alphabet"] = alphabet
        return await self.call("random_edits", reply_timeout=30 + count * delay_ms / 1000, **args)

    async def set_awareness(self, field: str, value: Any) -> None:
        await self.call("awareness_set", field=field, value=value)

    async def set_awareness_state(self, state: dict | None) -> None:
        """Replace the whole local awareness state; ``None`` announces leaving."""
        await self.call("awareness_state", state=state)

    async def awareness_states(self) -> dict[int, Any]:
        """Every awareness state this client knows, by Yjs client id (its own included)."""
        result = await self.call("awareness_states")
        return {int(client): state for client, state in result["states"].items()}

    async def info(self) -> dict:
        """``{client_id, connected, synced, status, should_connect, url}``."""
        return await self.call("info")

    async def disconnect(self) -> None:
        await self.call("disconnect")

    async def reconnect(self) -> None:
        await self.call("reconnect")

    async def destroy(self) -> None:
        """Destroy the provider (the doc stays; ``connect`` may be called again)."""
        await self.call("destroy")

    async def watch_updates(self, on: bool = True) -> None:
        """Report every doc update as an ``update`` event: ``{local, update}`` (hex bytes)."""
        await self.call("watch_updates", on=on)

    async def state_vector(self) -> bytes:
        return bytes.fromhex(await self.call("state_vector"))

    async def encode_state(self, vector: bytes | None = None) -> bytes:
        result = await self.call("encode_state", vector=vector.hex() if vector else None)
        return bytes.fromhex(result)

    async def apply_update(self, update: bytes) -> None:
        """Apply an update as a local change: the provider sends it on to the server."""
        await self.call("apply_update", update=update.hex())

    # -- events --------------------------------------------------------------------------------

    def mark(self) -> int:
        """A position in :attr:`events`, for ``wait_event(..., since=mark)``."""
        return len(self.events)

    async def wait_event(self, predicate: Callable[[Event], object], timeout: float = 10.0,
                         since: int = 0, message: str = "an event") -> Event:
        """The first event from ``events[since:]`` for which ``predicate`` is true, waiting."""
        deadline = time.monotonic() + timeout
        checked = since
        while True:
            for event in self.events[checked:]:
                if predicate(event):
                    return event
            checked = max(checked, len(self.events))
            if self._exited is not None:
                raise RuntimeError(f"{self._exited} while waiting for {message}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{self.name}: timed out after {timeout}s waiting for "
                                     f"{message}; events: {self.events[since:][-20:]}")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def wait_close(self, timeout: float = 10.0, since: int = 0) -> Event:
        """The next close of the websocket by the server: ``{code, reason, wasClean}``."""
        return await self.wait_event(lambda e: e["event"] == "close" and not e["local"], timeout,
                                     since, "the server to close the websocket")

    async def wait_status(self, status: str, timeout: float = 10.0, since: int = 0) -> Event:
        """The next ``status`` event ``connecting``, ``connected`` or ``disconnected``."""
        return await self.wait_event(lambda e: e["event"] == "status" and e["status"] == status,
                                     timeout, since, f"status {status}")

    async def wait_content(self, expected: str | Callable[[str], object],
                           timeout: float = 10.0) -> str:
        """Poll until the content equals ``expected`` (or ``expected(content)`` is true)."""
        def matches(content: str) -> bool:
            return bool(expected(content)) if callable(expected) else content == expected

        deadline = time.monotonic() + timeout
        while not matches(content := await self.content()):
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: content after {timeout}s: {content!r}")
            await asyncio.sleep(0.02)
        return content

    @property
    def closes(self) -> list[Event]:
        """Every websocket close so far, local ones (``local: True``, code None) included."""
        return [e for e in self.events if e["event"] == "close"]

    @property
    def problems(self) -> list[Event]:
        """What went wrong inside node outside any command: exceptions (``uncaught``, e.g. a
        malformed message in the provider) and console errors and warnings (``console``, e.g.
        y-protocols' "Caught error while handling a Yjs update", which it swallows)."""
        return [e for e in self.events if e["event"] in ("uncaught", "console")]


@contextlib.asynccontextmanager
async def yjs_clients() -> AsyncIterator[Callable[..., Awaitable[NodeYjsClient]]]:
    """A factory of started clients, all closed on exit::

        async with yjs_clients() as new_client:
            a, b = await new_client("a"), await new_client("b")
    """
    clients: list[NodeYjsClient] = []

    async def new_client(name: str = "yjs") -> NodeYjsClient:
        client = NodeYjsClient(f"{name}{len(clients)}" if name == "yjs" else name)
        clients.append(client)
        return await client.start()

    try:
        yield new_client
    finally:
        for client in clients:
            await client.close()


async def wait_converged(clients: list[NodeYjsClient], timeout: float = 15.0) -> dict[str, str]:
    """Wait until every client has the same content and title; return them."""
    deadline = time.monotonic() + timeout
    while True:
        texts = [await client.text() for client in clients]
        if all(t == texts[0] for t in texts):
            return texts[0]
        if time.monotonic() > deadline:
            summary = {c.name: {k: (len(v), v[:60]) for k, v in t.items()}
                       for c, t in zip(clients, texts, strict=True)}
            raise AssertionError(f"clients did not converge within {timeout}s: {summary}")
        await asyncio.sleep(0.02)
