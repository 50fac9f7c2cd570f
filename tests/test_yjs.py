"""The Yjs endpoint against the session server: real npm yjs/y-websocket clients under node,
pycrdt's provider, JSON clients and REST on the same notes."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time

import httpx
import pytest
from conftest import ServerProcess
from live_helpers import (
    Raw,
    RecordingClient,
    close_all,
    connect_all,
    create_note,
    type_randomly,
    yjs_text,
)
from live_helpers import wait_converged as wait_json_converged
from pycrdt import Doc, Text
from websockets.asyncio.client import connect as ws_connect
from yjs_node import NodeYjsClient, wait_converged, yjs_clients
from yjs_py import PyYjsClient, RawYjs, yjs_url

from notes.client import LiveClient
from notes.collab.awareness import Awareness, BadAwareness
from notes.collab.lib0 import write_string, write_uint
from notes.collab.yjs import (
    MESSAGE_AWARENESS,
    MESSAGE_SYNC,
    SYNC_STEP1,
    SYNC_UPDATE,
    awareness_message,
    sync_message,
)

ALPHABET = ["a", "b", "é", "漢", "😀", " ", "\n"]


def yurl(server: ServerProcess) -> str:
    return server.ws_url + "/yjs"


async def joined(client: NodeYjsClient, server: ServerProcess, note_id: str,
                 **params: str) -> NodeYjsClient:
    await client.connect(yurl(server), note_id, params=params or None)
    await client.wait_synced()
    return client


async def until(read, check, what: str, timeout: float = 10.0):
    """Poll the coroutine function ``read`` until ``check`` holds for its value; the value."""
    deadline = time.monotonic() + timeout
    while True:
        value = await read()
        if check(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last {value!r}")
        await asyncio.sleep(0.02)


async def get_note(client: httpx.AsyncClient, note_id: str) -> dict:
    return (await client.get(f"/notes/{note_id}")).json()


def utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


# --- one room, two protocols ------------------------------------------------------------------


async def test_yjs_json_and_rest_writers_converge_and_the_row_agrees(server, ahttp, db):
    note_id = await create_note(ahttp, title="mixed", content="héllo 漢字 😀\n")
    async with yjs_clients() as new_client:
        js = [await joined(await new_client(f"js{i}"), server, note_id) for i in range(2)]
        json_clients = await connect_all(server.url, note_id, 2, cls=RecordingClient)
        start_rev = json_clients[0].rev

        async def rest_writer() -> None:
            for i in range(5):
                current = (await ahttp.get(f"/notes/{note_id}")).json()["content"]
                patched = await ahttp.patch(f"/notes/{note_id}",
                                            json={"content": f"[rest {i}]" + current})
                assert patched.status_code == 200, patched.text
                await asyncio.sleep(0)

        await asyncio.gather(
            *(client.random_edits(120, seed=seed, delay_ms=2) for seed, client in enumerate(js)),
            *(type_randomly(client, random.Random(10 + seed), 120)
              for seed, client in enumerate(json_clients)),
            rest_writer(),
        )
        # A Yjs client's own update reaches the other Yjs clients at once, and the JSON clients
        # once it is stored: the two sides agree in the end, not at every instant.
        deadline = time.monotonic() + 30
        while True:
            json_text = await wait_json_converged(json_clients, timeout=30)
            texts = await wait_converged(js, timeout=30)
            if texts["content"] == json_text or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert texts["content"] == json_text
        assert texts["title"] == "mixed"
        # (Random deletes may have cut into the REST markers; the REST edits themselves came.)
        assert len([m for m in json_clients[0].of_type("edit") if m["client"] is None]) >= 5
        # Every JSON client saw every revision once, in order, the Yjs ones included.
        final_rev = json_clients[0].rev
        for client in json_clients:
            assert client.revisions() == list(range(start_rev + 1, final_rev + 1))
        # The Yjs clients' changes arrived as edits from them (clients unknown to JSON).
        json_ids = {c.state.client_id for c in json_clients} | {None}
        assert any(m["client"] not in json_ids for m in json_clients[0].of_type("edit"))
        note = (await ahttp.get(f"/notes/{note_id}")).json()
        assert note["content"] == json_text and note["rev"] == final_rev
        row = await db.wait_row(note_id, lambda r: r.rev == final_rev, 10, "the save")
        assert row.content == json_text == yjs_text(row.yjs_state)
        assert not any(c.problems for c in js), [c.problems for c in js]
        await close_all(json_clients)


async def test_a_yjs_edit_reaches_json_clients_as_a_code_point_delta(server, ahttp):
    note_id = await create_note(ahttp, content="é漢😀b")
    json_client = await Raw.open(server.url, note_id)
    async with NodeYjsClient("js") as js:
        await joined(js, server, note_id)
        await json_client.next("join")
        # UTF-16 index 4 is after é, 漢 and both halves of 😀: code point 3, UTF-8 byte 9.
        await js.insert(utf16("é漢😀"), "ü😀")
        edit = await json_client.next("edit")
        assert edit["delta"] == [{"retain": 3}, {"insert": "ü😀"}]
        await js.delete(utf16("é"), utf16("漢😀ü"))
        edit = await json_client.next("edit")
        assert edit["delta"] == [{"retain": 1}, {"delete": 3}]
        assert edit["client"] is not None
        # And the other way: a JSON edit in code points lands where Yjs expects it.
        await json_client.send({"type": "edit", "rev": edit["rev"],
                                "delta": [{"retain": 2}, {"insert": "→"}]})
        await json_client.next("ack")
        await js.wait_content("é😀→b")
    assert (await ahttp.get(f"/notes/{note_id}")).json()["content"] == "é😀→b"
    await json_client.close()


async def test_titles_are_shared_between_yjs_json_and_rest(server, ahttp):
    note_id = await create_note(ahttp, title="first")
    json_client = await Raw.open(server.url, note_id)
    async with NodeYjsClient("js") as js:
        await joined(js, server, note_id)
        assert (await js.text())["title"] == "first"
        await json_client.send({"type": "title", "title": "from json 漢"})
        await until(js.text, lambda t: t["title"] == "from json 漢", "the JSON title")
        await js.insert(0, "Yjs: ", type="title")
        message = await json_client.next("title")
        assert message["title"] == "Yjs: from json 漢"
        assert (await ahttp.get(f"/notes/{note_id}")).json()["title"] == "Yjs: from json 漢"
        assert (await ahttp.patch(f"/notes/{note_id}", json={"title": "REST"})).status_code == 200
        await until(js.text, lambda t: t["title"] == "REST", "the REST title")
        assert (await json_client.next("title"))["title"] == "REST"
    await json_client.close()


async def test_a_title_made_too_long_by_yjs_is_cut_for_everyone(server, ahttp):
    note_id = await create_note(ahttp, title="t")
    json_client = await Raw.open(server.url, note_id)
    async with NodeYjsClient("js") as js:
        await joined(js, server, note_id)
        await js.insert(1, "x" * 300, type="title")
        await until(js.text, lambda t: t["title"] == ("t" + "x" * 300)[:200], "the cut title")
        assert (await json_client.next("title"))["title"] == ("t" + "x" * 300)[:200]
    assert len((await ahttp.get(f"/notes/{note_id}")).json()["title"]) == 200
    await json_client.close()


# --- joining, reconnecting --------------------------------------------------------------------


async def test_a_late_yjs_client_gets_the_whole_document_and_python_clients_work(server, ahttp):
    note_id = await create_note(ahttp, title="late", content="start ")
    async with yjs_clients() as new_client:
        first = await joined(await new_client("first"), server, note_id)
        await first.random_edits(100, seed=3)
        expected = await first.content()
        async with PyYjsClient(server.ws_url, note_id) as python:
            await python.wait_content(expected)
            assert str(python.title) == "late"
            python.content.insert(0, "py😀")  # pycrdt indexes UTF-8 bytes
            await first.wait_content("py😀" + expected)
        late = await joined(await new_client("late"), server, note_id)
        assert await late.text() == {"content": "py😀" + expected, "title": "late"}


async def test_a_yjs_client_reconnecting_after_a_restart_neither_loses_nor_duplicates(
        database_url):
    server = ServerProcess(database_url, log_name="yjs-restart").start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            note_id = await create_note(client, content="kept 😀")
        async with yjs_clients() as new_client:
            js = await joined(await new_client("js"), server, note_id)
            await js.insert(0, "before ")
            assert server.stop() == 0  # a clean stop saves
            await js.wait_status("disconnected", 10)
            await js.insert(0, "offline ")  # typed while the server was away
            server.start()
            await js.wait_status("connected", 15)
            await js.wait_synced()
            other = await joined(await new_client("other"), server, note_id)
            await other.wait_content("offline before kept 😀")
            assert await js.content() == "offline before kept 😀"
            async with httpx.AsyncClient(base_url=server.url) as client:
                note = (await client.get(f"/notes/{note_id}")).json()
            assert note["content"] == "offline before kept 😀"
    finally:
        server.stop()


# --- presence ---------------------------------------------------------------------------------


async def test_awareness_is_relayed_and_yjs_peers_show_up_for_json_clients(server, ahttp):
    note_id = await create_note(ahttp)
    json_client = await Raw.open(server.url, note_id, name="jason")
    async with yjs_clients() as new_client:
        ada = await joined(await new_client("ada"), server, note_id, name="ada-param")
        joined_message = await json_client.next("join")
        assert joined_message["name"] == "ada-param"
        bob = await joined(await new_client("bob"), server, note_id)
        await json_client.next("join")
        await ada.set_awareness("user", {"name": "Ada", "color": "#f80"})
        presence = await json_client.next("presence")
        assert presence == {"type": "presence", "client": joined_message["client"],
                            "name": "Ada", "cursor": None}
        await until(bob.awareness_states, lambda states: any(
            s.get("user", {}).get("name") == "Ada" for s in states.values()), "Ada's state")
        states = await bob.awareness_states()
        assert {"name": "Ada", "color": "#f80"} in [s.get("user") for s in states.values()]
        # A JSON client that connects now sees the Yjs peers with their names.
        late = await Raw.open(server.url, note_id)
        assert sorted(p["name"] for p in late.hello["peers"]) == ["Ada", "anonymous", "jason"]
        await late.close()
        assert (await json_client.next("leave"))["client"] == late.id
        # Leaving: the JSON client gets leave, the other Yjs client loses the state.
        await ada.destroy()
        assert (await json_client.next("leave"))["client"] == joined_message["client"]
        await until(bob.awareness_states, lambda states: not any(
            s.get("user", {}).get("name") == "Ada" for s in states.values()), "Ada's state gone")
    await json_client.close()


async def test_a_newcomer_gets_the_awareness_states_and_can_query_them(server, ahttp):
    note_id = await create_note(ahttp)
    async with NodeYjsClient("ada") as ada:
        await joined(ada, server, note_id)
        await ada.set_awareness("user", {"name": "Ada"})
        raw = await RawYjs.open(server.ws_url, note_id)
        kinds = []
        for _ in range(2):
            kind, step, payload = await raw.recv()
            kinds.append((kind, step))
            if kind == MESSAGE_AWARENESS:
                assert b'"name":"Ada"' in payload
        assert kinds == [(MESSAGE_SYNC, SYNC_STEP1), (MESSAGE_AWARENESS, None)]
        await raw.send(bytes((3,)))  # query awareness
        kind, _, payload = await raw.recv()
        assert kind == MESSAGE_AWARENESS and b'"name":"Ada"' in payload
        await raw.close()


def test_awareness_states_expire_after_the_timeout_without_renewal():
    now = [0.0]
    awareness = Awareness(timeout=30, clock=lambda: now[0])

    def update(client: int, clock: int, state: str) -> bytes:
        return write_uint(1) + write_uint(client) + write_uint(clock) + write_string(state)

    assert awareness.apply(update(7, 1, '{"user":{"name":"A"}}'), "conn-a") is not None
    assert awareness.apply(update(8, 1, '{"user":{"name":"B"}}'), "conn-b") is not None
    assert awareness.apply(update(7, 1, '{"user":{"name":"old"}}'), "conn-a") is None  # stale
    assert awareness.name_of("conn-a") == "A"
    now[0] = 20.0
    awareness.apply(update(8, 2, '{"user":{"name":"B"}}'), "conn-b")  # B renews, A does not
    now[0] = 31.0
    removed = awareness.expire()
    assert removed == update(7, 2, "null")
    assert awareness.name_of("conn-a") is None and awareness.name_of("conn-b") == "B"
    assert awareness.encode_all() == update(8, 2, '{"user":{"name":"B"}}')
    assert awareness.remove_owner("conn-b") == update(8, 3, "null")
    assert awareness.encode_all() is None
    # One connection may speak for a few clients, not for any number.
    for client in range(100, 108):
        awareness.apply(update(client, 1, "{}"), "conn-c")
    with pytest.raises(BadAwareness):
        awareness.apply(update(108, 1, "{}"), "conn-c")
    assert awareness.apply(update(108, 1, "{}"), "conn-d") is not None


# --- saves ------------------------------------------------------------------------------------


async def test_yjs_changes_are_debounced_saved_and_a_sync_only_client_costs_no_write(
        server, ahttp, db):
    note_id = await create_note(ahttp, content="quiet")
    before = await db.row(note_id)
    async with NodeYjsClient("reader") as reader:
        await joined(reader, server, note_id)
        await reader.set_awareness("user", {"name": "R"})
        assert await reader.content() == "quiet"
        await reader.disconnect()
        await reader.reconnect()
        await reader.wait_synced()
        assert await reader.content() == "quiet"
    async with NodeYjsClient("writer") as writer:
        await joined(writer, server, note_id)
        for char in "typed":
            await writer.insert(len(await writer.content()), char)
        row = await db.wait_row(note_id, lambda r: r.content == "quiettyped", 10, "the save")
        # One write in all: none for the client that only synced (and set its awareness), one
        # debounced write for five keystrokes.
        assert row.version == before.version + 1
        assert yjs_text(row.yjs_state) == "quiettyped"


# --- deletion and unknown notes ---------------------------------------------------------------


async def test_unknown_and_deleted_notes_close_yjs_sockets_with_4404(server, ahttp):
    for room in ("00000000-0000-0000-0000-000000000000", "not-a-uuid"):
        raw = await RawYjs.open(server.ws_url, room)
        assert (await raw.closed())[0] == 4404
    note_id = await create_note(ahttp)
    async with NodeYjsClient("js") as js:
        await joined(js, server, note_id)
        mark = js.mark()
        assert (await ahttp.delete(f"/notes/{note_id}")).status_code == 204
        close = await js.wait_close(10, since=mark)
        assert close["code"] == 4404
        # 44xx: y-websocket does not reconnect to a note that is gone.
        await js.wait_status("disconnected", 5, since=mark)


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(("frame", "what"), [
    ("hello", "a text frame"),
    (b"", "an empty frame"),
    (b"\x09", "an unknown message type"),
    (b"\x00\x07\x00", "an unknown sync step"),
    (b"\x00\x02\x05ab", "a truncated update"),
    (b"\x00\x02\x03\x01\x02\x03", "an undecodable update"),
    (b"\x00\x00\x02\xff\xff", "an undecodable state vector"),
    (b"\x01\x04\x01\x01\x01\x05", "a truncated awareness update"),
    (awareness_message(write_uint(1) + write_uint(5) + write_uint(1) + write_string("{no")),
     "an awareness state that is not JSON"),
    (awareness_message(write_uint(1) + write_uint(5) + write_uint(1)
                     + write_string("[" * 5000 + "]" * 5000)), "deeply nested awareness"),
    (b"\x00\x02\x02\x00\x00\x00", "bytes after the message"),
])
async def test_bad_yjs_input_is_refused_with_4400_and_changes_nothing(server, ahttp, frame, what):
    note_id = await create_note(ahttp, content="intact")
    witness = await Raw.open(server.url, note_id)
    raw = await (await RawYjs.open(server.ws_url, note_id)).handshake()
    await raw.send(frame)
    code, reason = await raw.closed()
    assert code == 4400, (what, code, reason)
    # The room is unharmed: another client still edits, the text is what it was.
    await witness.send({"type": "edit", "rev": witness.hello["rev"],
                        "delta": [{"insert": "still "}]})
    assert (await witness.next("ack"))["rev"] == witness.hello["rev"] + 1
    assert (await ahttp.get(f"/notes/{note_id}")).json()["content"] == "still intact"
    await witness.close()


def update_inserting(text: str, base: bytes | None = None) -> bytes:
    """A Yjs update inserting ``text`` at the start of ``content`` (made by a pycrdt doc)."""
    doc = Doc()
    if base is not None:
        doc.apply_update(base)
    content = doc.get("content", type=Text)
    state = doc.get_state()
    content.insert(0, text)
    return doc.get_update(state)


async def test_an_update_with_nul_or_past_the_length_limit_is_refused(database_url):
    server = ServerProcess(database_url, env={"NOTES_MAX_CONTENT": "50"},
                           log_name="yjs-limits").start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            note_id = await create_note(client, content="x" * 40)
            for text, code in (("a\x00b", 4400), ("y" * 11, 4413)):
                raw = await (await RawYjs.open(server.ws_url, note_id)).handshake()
                await raw.send(sync_message(SYNC_UPDATE, update_inserting(text,
                                                                        raw.doc.get_update())))
                closed_code, reason = await raw.closed()
                assert closed_code == code, (text, closed_code, reason)
            # What fits is applied.
            raw = await (await RawYjs.open(server.ws_url, note_id)).handshake()
            await raw.send(sync_message(SYNC_UPDATE,
                                      update_inserting("z" * 10, raw.doc.get_update())))
            note = await until(lambda: get_note(client, note_id),
                               lambda note: note["content"] == "z" * 10 + "x" * 40, "the fit")
            assert note["content"] == "z" * 10 + "x" * 40
            await raw.close()
    finally:
        server.stop()


async def test_a_frame_over_the_size_limit_closes_1009(database_url):
    server = ServerProcess(database_url, env={"NOTES_WS_MAX_SIZE": "1000"},
                           log_name="yjs-frame").start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            note_id = await create_note(client)
        raw = await (await RawYjs.open(server.ws_url, note_id)).handshake()
        await raw.send(sync_message(SYNC_UPDATE, update_inserting("x" * 2000)))
        assert (await raw.closed())[0] == 1009
    finally:
        server.stop()


# --- surrogate pairs --------------------------------------------------------------------------


async def test_an_edit_splitting_a_surrogate_pair_is_refused_and_everyone_else_converges(
        server, ahttp, db):
    note_id = await create_note(ahttp, content="a😀b")
    json_client = await LiveClient.connect(server.url, note_id, name="json")
    async with yjs_clients() as new_client:
        splitter = await joined(await new_client("splitter"), server, note_id)
        other = await joined(await new_client("other"), server, note_id)
        mark = splitter.mark()
        await splitter.insert(2, "x")  # between the halves of 😀 (UTF-16 index 2)
        close = await splitter.wait_close(10, since=mark)
        assert close["code"] == 4422
        # Deleting half of the pair is refused the same way (a fresh client each time).
        halver = await joined(await new_client("halver"), server, note_id)
        mark = halver.mark()
        await halver.delete(2, 1)
        assert (await halver.wait_close(10, since=mark))["code"] == 4422
        # Nobody else saw either change; the room goes on.
        await other.insert(4, "!")
        await other.wait_content("a😀b!")
        await json_client.wait_for(lambda: json_client.text == "a😀b!")
        late = await joined(await new_client("late"), server, note_id)
        assert await late.content() == "a😀b!"
    row = await db.wait_row(note_id, lambda r: r.content == "a😀b!", 10, "the save")
    assert yjs_text(row.yjs_state) == "a😀b!"
    await json_client.close()


async def test_a_lone_surrogate_from_javascript_arrives_as_the_replacement_character(
        server, ahttp):
    note_id = await create_note(ahttp, content="ab")
    json_client = await LiveClient.connect(server.url, note_id, name="json")
    async with yjs_clients() as new_client:
        typist = await joined(await new_client("typist"), server, note_id)
        other = await joined(await new_client("other"), server, note_id)
        await typist.insert(1, "\ud83d")  # half an emoji: lib0 encodes it as U+FFFD
        await other.wait_content("a\ufffdb")
        await json_client.wait_for(lambda: json_client.text == "a\ufffdb")
        assert (await ahttp.get(f"/notes/{note_id}")).json()["content"] == "a\ufffdb"
        assert typist.closes == []
    await json_client.close()


# --- slow readers -----------------------------------------------------------------------------


async def test_a_yjs_socket_that_does_not_read_is_closed_1013(database_url):
    server = ServerProcess(database_url, env={"NOTES_WS_QUEUE_SIZE": "5"},
                           log_name="yjs-slow").start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            note_id = await create_note(client)
        # A socket with a tiny receive buffer that never reads anything.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        sloth = await ws_connect(yjs_url(server.ws_url, note_id, name="sloth"), sock=sock,
                                 max_queue=1, proxy=None)
        writer = await LiveClient.connect(server.url, note_id, name="writer")
        chunk = "😀" * 50_000
        for i in range(100):
            if i % 2 == 0:
                await writer.insert(0, chunk)
            else:
                await writer.delete(0, len(chunk))
            await writer.synced(timeout=5)
            if "sloth" not in {peer["name"] for peer in writer.peers.values()}:
                break
        else:
            pytest.fail("the slow Yjs reader was never cut off")
        with contextlib.suppress(Exception):
            async with asyncio.timeout(10):
                async for _ in sloth:
                    pass
        assert sloth.close_code == 1013, (sloth.close_code, sloth.close_reason)
        await writer.close()
    finally:
        server.stop()
