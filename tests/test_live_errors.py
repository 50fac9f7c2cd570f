"""Every error path of the live protocol, against real servers with small limits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from conftest import ServerProcess, free_port, wait_for
from live_helpers import Raw, RecordingClient, close_all, create_note, wait_converged
from sanic import Sanic
from sanic.application.constants import ServerStage
from sanic.application.state import ApplicationServerInfo
from websockets.asyncio.client import connect as ws_connect

import notes.http.live
from notes.app import create_app
from notes.client import LiveClient, LiveClosed
from notes.config import Settings

MAX_CONTENT = 100_000
WS_MAX_SIZE = 1_000_000
HISTORY_LIMIT = 5
QUEUE_SIZE = 16


@pytest.fixture(scope="module")
def limited(database_url: str) -> Iterator[ServerProcess]:
    """A server with small limits, so that each one can be hit."""
    process = ServerProcess(database_url, log_name="limited-server", env={
        "NOTES_MAX_CONTENT": str(MAX_CONTENT),
        "NOTES_WS_MAX_SIZE": str(WS_MAX_SIZE),
        "NOTES_HISTORY_LIMIT": str(HISTORY_LIMIT),
        "NOTES_WS_QUEUE_SIZE": str(QUEUE_SIZE),
    })
    try:
        yield process.start()
    finally:
        process.stop()


@pytest.fixture
async def ahttp(limited: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=limited.url, timeout=30) as client:
        yield client


async def expect_error(raw: Raw, frame: dict | str, code: str, ref: object = None) -> dict:
    await raw.send(frame)
    message = await raw.next("error", "ack", "resync")
    assert message["type"] == "error", message
    assert message["code"] == code, message
    assert message["ref"] == ref
    assert isinstance(message["message"], str) and message["message"]
    return message


async def assert_still_works(raw: Raw, rev: int, ref: str = "still-alive") -> None:
    """The connection stayed open: a valid edit is acknowledged."""
    await raw.send({"type": "edit", "rev": rev, "delta": [{"insert": "."}], "ref": ref})
    assert await raw.next("ack", "error") == {"type": "ack", "rev": rev + 1, "ref": ref}


# --- rejected messages: an error, nothing changed, the connection stays open --------------------


async def test_malformed_frames_get_bad_json_and_the_connection_stays(limited, ahttp):
    note_id = await create_note(ahttp, content="abc")
    raw = await Raw.open(limited.url, note_id)
    try:
        rev = raw.hello["rev"]
        for frame in ("{not json", "", "[1, 2]", '"edit"', "null", "42"):
            await expect_error(raw, frame, "bad_json")
        await raw.send(b'\xff\xfe binary garbage')
        assert (await raw.next("error"))["code"] == "bad_json"
        await assert_still_works(raw, rev)
    finally:
        await raw.close()


async def test_deeply_nested_frames_get_bad_json_and_the_connection_stays(limited, ahttp):
    note_id = await create_note(ahttp, content="abc")
    raw = await Raw.open(limited.url, note_id)
    try:
        rev = raw.hello["rev"]
        # Too deep for Python's parser, and deep enough to parse but not to encode back.
        for depth in (100_000, 1_000, 100):
            frame = '{"type": "edit", "rev": 0, "delta": [], "ref": ' + "[" * depth + "]" * depth
            await expect_error(raw, frame + "}", "bad_json")
        await assert_still_works(raw, rev)
    finally:
        await raw.close()


async def test_a_title_with_text_postgresql_cannot_store_is_refused_like_everywhere(
        limited, ahttp):
    note_id = await create_note(ahttp, title="kept", content="abc")
    raw = await Raw.open(limited.url, note_id)
    try:
        for title in ("nul\x00here", "half \ud83d emoji", "x" * 201):
            await expect_error(raw, {"type": "title", "title": title, "ref": "t"}, "bad_title",
                               "t")
        await assert_still_works(raw, raw.hello["rev"])
        note = (await ahttp.get(f"/notes/{note_id}")).json()
        assert (note["title"], note["content"]) == ("kept", ".abc")
    finally:
        await raw.close()


async def test_unknown_types_and_wrong_fields_get_bad_message(limited, ahttp):
    note_id = await create_note(ahttp, content="abc")
    raw = await Raw.open(limited.url, note_id)
    try:
        rev = raw.hello["rev"]
        cases = [
            ({"type": "shout", "ref": 1}, 1),
            ({"no": "type"}, None),
            ({"type": None, "ref": "x"}, "x"),
            ({"type": "edit", "rev": rev, "ref": "r1"}, "r1"),  # no delta
            ({"type": "edit", "delta": [], "ref": "r2"}, "r2"),  # no rev
            ({"type": "edit", "rev": str(rev), "delta": [], "ref": "r3"}, "r3"),
            ({"type": "edit", "rev": -1, "delta": [], "ref": "r4"}, "r4"),
            ({"type": "edit", "rev": True, "delta": [], "ref": "r5"}, "r5"),
            ({"type": "edit", "rev": 1.5, "delta": [], "ref": "r6"}, "r6"),
            ({"type": "title", "title": 7, "ref": "t1"}, "t1"),
            ({"type": "title", "ref": "t2"}, "t2"),
            ({"type": "presence", "cursor": None, "ref": "p1"}, "p1"),  # no rev
            ({"type": "presence", "rev": rev, "cursor": {"index": -1, "length": 0},
              "ref": "p2"}, "p2"),
            ({"type": "presence", "rev": rev, "cursor": "here", "ref": "p3"}, "p3"),
            ({"type": "presence", "rev": rev, "cursor": {"index": 1}, "ref": "p4"}, "p4"),
        ]
        for frame, ref in cases:
            await expect_error(raw, frame, "bad_message", ref)
        await assert_still_works(raw, rev)
        note = (await ahttp.get(f"/notes/{note_id}")).json()
        assert note["content"] == ".abc" and note["title"] == "live"
    finally:
        await raw.close()


async def test_bad_deltas_future_revs_and_limits(limited, ahttp):
    note_id = await create_note(ahttp, content="hé😀")
    raw = await Raw.open(limited.url, note_id)
    try:
        rev = raw.hello["rev"]

        def edit(delta: object, ref: str, base: int = rev) -> dict:
            return {"type": "edit", "rev": base, "delta": delta, "ref": ref}

        bad_deltas = [
            [{"retain": 4}],  # reaches past the end (3 code points)
            [{"retain": 2}, {"delete": 2}],
            [{"retain": 0}, {"insert": "x"}],
            [{"delete": 0}],
            [{"insert": ""}],
            [{"insert": "a\x00b"}],
            [{"insert": "\ud800"}],  # a lone surrogate (JSON allows it, storage does not)
            [{"retain": 1, "insert": "x"}],
            [{"move": 1}],
            [{"retain": "1"}],
            [{"retain": True}],
            [{"retain": 1.0}],
            ["insert"],
            {"insert": "x"},
            "insert x",
        ]
        for i, delta in enumerate(bad_deltas):
            await expect_error(raw, edit(delta, f"d{i}"), "bad_delta", f"d{i}")
        await expect_error(raw, edit([], "f1", rev + 1), "future_rev", "f1")
        await expect_error(raw, edit([{"insert": "x"}], "f2", rev + 100), "future_rev", "f2")
        await expect_error(raw, edit([{"insert": "x" * (MAX_CONTENT - 2)}], "big"), "too_large",
                           "big")
        await expect_error(raw, {"type": "title", "title": "t" * 201, "ref": "title"},
                           "bad_title", "title")
        note = (await ahttp.get(f"/notes/{note_id}")).json()
        assert (note["content"], note["rev"], note["title"]) == ("hé😀", rev, "live")

        # At the limit is fine; one more code point is not.
        await raw.send(edit([{"retain": 3}, {"insert": "é" * (MAX_CONTENT - 3)}], "fill"))
        assert (await raw.next("ack", "error"))["type"] == "ack"
        await expect_error(raw, edit([{"insert": "x"}], "over", rev + 1), "too_large", "over")
        # Shrinking is always allowed.
        await raw.send(edit([{"delete": MAX_CONTENT - 3}], "shrink", rev + 1))
        assert await raw.next("ack", "error") == {"type": "ack", "rev": rev + 2, "ref": "shrink"}
        assert (await ahttp.get(f"/notes/{note_id}")).json()["content"] == "é" * 3
    finally:
        await raw.close()


async def test_live_client_undoes_a_rejected_edit(limited, ahttp):
    note_id = await create_note(ahttp, content="x" * (MAX_CONTENT - 1))
    client = await LiveClient.connect(limited.url, note_id)
    try:
        await client.insert(0, "ab")  # would be one past the limit
        await client.wait_for(lambda: client.errors)
        assert client.errors[0]["code"] == "too_large"
        await client.synced()
        assert client.text == "x" * (MAX_CONTENT - 1)
        await client.insert(0, "a")
        await client.synced()
        assert (await ahttp.get(f"/notes/{note_id}")).json()["content"] == client.text
    finally:
        await client.close()


# --- closes -------------------------------------------------------------------------------------


async def test_oversized_frame_closes_with_1009(limited, ahttp):
    note_id = await create_note(ahttp, content="")
    raw = await Raw.open(limited.url, note_id)
    other = await LiveClient.connect(limited.url, note_id)
    try:
        padding = "x" * (WS_MAX_SIZE + 100)
        await raw.send(json.dumps({"type": "edit", "rev": 0, "delta": [{"insert": padding}]}))
        code, _ = await raw.closed()
        assert code == 1009
        assert (await ahttp.get(f"/notes/{note_id}")).json()["content"] == ""
        await other.insert(0, "fine")
        await other.synced()
    finally:
        await raw.close()
        await other.close()


async def test_unknown_note_closes_with_4404(limited):
    missing = uuid.uuid4()
    raw = await Raw.open(limited.url, missing, expect_hello=False)
    code, seen = await raw.closed()
    assert (code, seen) == (4404, [])
    with pytest.raises(LiveClosed) as closed:
        await LiveClient.connect(limited.url, missing)
    assert closed.value.code == 4404


async def test_delete_while_connected_sends_deleted_then_4404(limited, ahttp):
    note_id = await create_note(ahttp, content="doomed")
    raw = await Raw.open(limited.url, note_id)
    client = await LiveClient.connect(limited.url, note_id)
    try:
        await client.insert(0, "very ")
        await client.synced()
        assert (await ahttp.delete(f"/notes/{note_id}")).status_code == 204
        code, seen = await raw.closed()
        assert code == 4404
        assert seen[-1] == {"type": "deleted"}
        await wait_for(lambda: client._finished, 5, "the client to give up")
        assert client.deleted and client.closed_code == 4404
        assert (await ahttp.get(f"/notes/{note_id}")).status_code == 404
        with pytest.raises(LiveClosed):
            await LiveClient.connect(limited.url, note_id)
    finally:
        await raw.close()
        await client.close()


# --- history limit --------------------------------------------------------------------------------


async def test_stale_rev_gets_resync(limited, ahttp):
    note_id = await create_note(ahttp, content="base")
    raw = await Raw.open(limited.url, note_id)
    writer = await LiveClient.connect(limited.url, note_id)
    try:
        rev = raw.hello["rev"]
        for i in range(HISTORY_LIMIT + 1):
            await writer.insert(0, str(i))
            await writer.synced()
        # One revision too old: resync, nothing applied.
        await raw.send({"type": "edit", "rev": rev, "delta": [{"insert": "!"}], "ref": "old"})
        message = await raw.next("resync", "ack", "error")
        assert message == {"type": "resync", "rev": writer.rev, "content": writer.text,
                           "ref": "old"}
        # The oldest revision still kept works.
        await raw.send({"type": "edit", "rev": rev + 1, "delta": [{"insert": "!"}],
                        "ref": "oldest"})
        ack = await raw.next("ack", "resync", "error")
        assert ack == {"type": "ack", "rev": rev + HISTORY_LIMIT + 2, "ref": "oldest"}
        # A stale cursor is dropped silently; presence needs no resync.
        await raw.send({"type": "presence", "rev": rev, "cursor": {"index": 0, "length": 0}})
        await assert_still_works(raw, ack["rev"])

        response = await ahttp.post(f"/notes/{note_id}/edits",
                                    json={"rev": rev, "delta": [{"insert": "?"}]})
        assert response.status_code == 409, response.text
        current = (await ahttp.get(f"/notes/{note_id}")).json()
        body = response.json()
        assert (body["rev"], body["content"]) == (current["rev"], current["content"])
    finally:
        await raw.close()
        await writer.close()


class HeldClient(RecordingClient):
    """A client whose reader (``gate``) and reconnects (``hold``) the test can hold back."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gate = asyncio.Event()
        self.gate.set()
        self.hold = asyncio.Event()
        self.hold.set()

    async def _open(self) -> None:
        await self.hold.wait()
        await super()._open()

    async def _handle(self, msg: dict) -> None:
        await self.gate.wait()
        await super()._handle(msg)


async def test_live_client_rebases_after_resync(limited, ahttp):
    note_id = await create_note(ahttp, content="0123456789")
    slow = await HeldClient.connect(limited.url, note_id, name="slow")
    fast = await LiveClient.connect(limited.url, note_id, name="fast")
    try:
        slow.gate.clear()
        for i in range(HISTORY_LIMIT + 2):
            await fast.insert(0, f"<{i}>")
            await fast.synced()
        await slow.insert(10, "漢😀")  # on a revision the server no longer keeps
        await slow.insert(0, "é")  # buffered behind it
        slow.gate.set()
        text = await wait_converged([slow, fast])
        assert slow.of_type("resync"), "the server answered resync"
        others = "".join(f"<{i}>" for i in reversed(range(HISTORY_LIMIT + 2)))
        assert text == others + "é0123456789漢😀"
        assert (await ahttp.get(f"/notes/{note_id}")).json()["content"] == text
    finally:
        await close_all([slow, fast])


async def test_reconnect_beyond_the_history_rebases(limited, ahttp):
    note_id = await create_note(ahttp, content="abc")
    away = await HeldClient.connect(limited.url, note_id, name="away")
    here = await LiveClient.connect(limited.url, note_id, name="here")
    try:
        away.hold.clear()
        away.drop()
        await away.wait_for(lambda: not away.connected)
        await away.insert(3, "!")  # typed offline
        for i in range(HISTORY_LIMIT + 3):
            await here.insert(0, str(i))
            await here.synced()
        away.hold.set()
        text = await wait_converged([away, here])
        assert len(away.hellos) == 2
        assert "missed" not in away.hellos[-1]
        assert text == "76543210abc!"
    finally:
        await close_all([away, here])


# --- slow readers and failures ------------------------------------------------------------------


async def test_slow_reader_is_closed_with_1013_and_does_not_slow_others(limited, ahttp):
    note_id = await create_note(ahttp, content="")
    # A socket with a tiny receive buffer that never reads anything.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", limited.port))
    url = f"ws://127.0.0.1:{limited.port}/notes/{note_id}/live?name=sloth"
    sloth = await ws_connect(url, sock=sock, max_queue=1, proxy=None)
    writer = await RecordingClient.connect(limited.url, note_id, name="writer")
    watcher = await LiveClient.connect(limited.url, note_id, name="watcher")
    try:
        chunk = "😀" * (MAX_CONTENT - 10_000)  # 360 kB in every edit message to the reader
        latencies = []
        for i in range(100):
            started = time.monotonic()
            if i % 2 == 0:
                await writer.insert(0, chunk)
            else:
                await writer.delete(0, len(chunk))
            await writer.synced(timeout=5)
            latencies.append(time.monotonic() - started)
            if "sloth" not in {peer["name"] for peer in writer.peers.values()}:
                break
        else:
            pytest.fail("the slow reader was never cut off and let go (no `leave`)")
        assert max(latencies) < 1.0, max(latencies)
        await watcher.wait_for(lambda: watcher.rev == writer.rev)
        assert watcher.text == writer.text
        # The slow reader sees 1013 once it reads what the server managed to send.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(10):
                async for _ in sloth:
                    pass
        assert sloth.close_code == 1013, (sloth.close_code, sloth.close_reason)
    finally:
        await sloth.close()
        await close_all([writer, watcher])


@pytest.fixture(scope="module")
async def in_process_server(database_url: str) -> AsyncIterator[tuple[str, Sanic]]:
    """The app in this test's event loop (so that a test can patch it): its base URL and app."""
    port = free_port()
    settings = Settings(database_url=database_url, port=port, auth="off")
    app = create_app(settings, name=f"notes_test_{uuid.uuid4().hex[:8]}")
    server = await app.create_server(host="127.0.0.1", port=port, return_asyncio_server=True,
                                     access_log=False)
    assert server is not None
    await server.startup()
    # Mark the app as serving, as `app.run` does, so that named tasks (`app.add_task`) work.
    app.state.server_info.append(
        ApplicationServerInfo(settings={}, stage=ServerStage.SERVING, server=server))
    await server.before_start()
    await server.after_start()
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        await server.before_stop()
        await server.close()
        await server.wait_closed()
        await server.after_stop()


async def test_handler_failure_closes_with_1011(in_process_server, monkeypatch):
    base, _ = in_process_server
    async with httpx.AsyncClient(base_url=base) as client:
        note_id = await create_note(client, content="abc")
    original = notes.http.live.handle_frame

    def failing(room, connection, frame):
        if "boom" in frame:
            raise RuntimeError("injected failure")
        return original(room, connection, frame)

    monkeypatch.setattr(notes.http.live, "handle_frame", failing)
    victim = await Raw.open(base, note_id, "victim")
    bystander = await Raw.open(base, note_id, "bystander")
    try:
        await victim.send({"type": "edit", "rev": 0, "delta": [], "ref": "boom"})
        code, _ = await victim.closed()
        assert code == 1011
        assert (await bystander.next("leave"))["client"] == victim.id
        await assert_still_works(bystander, bystander.hello["rev"])
    finally:
        await victim.close()
        await bystander.close()


async def test_failure_while_opening_the_note_closes_with_1011(in_process_server, monkeypatch):
    """The database failing while a socket opens a note is a server error, not a normal close."""
    base, app = in_process_server
    async with httpx.AsyncClient(base_url=base) as client:
        note_id = await create_note(client, content="abc")

    async def database_down(note_id):
        raise ConnectionRefusedError("the database is down")

    monkeypatch.setattr(app.ctx.hub.store, "load_live", database_down)
    raw = await Raw.open(base, note_id, expect_hello=False)
    code, seen = await raw.closed()
    assert (code, seen) == (1011, [])
    with pytest.raises(LiveClosed) as closed:
        await LiveClient.connect(base, note_id)
    assert closed.value.code == 1011
