"""A websocket fuzz test: hypothesis' sequences of bad frames sent to a real server on both
protocols, beside well-behaved clients of both that keep editing the same note.

After every example: the server is alive and ``/health`` answers 200; a rejected message changed
nothing (no ``ack`` on the JSON socket, the same document for a Yjs observer); the bad socket got
an ``error`` or a documented close code, never silence; and at the end the well-behaved clients
converge with each other and with the note.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import Iterator

import httpx
import pytest
from conftest import ServerProcess
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed
from yjs_py import PyYjsClient, RawYjs

from notes.client import LiveClient
from notes.collab.lib0 import write_bytes, write_string, write_uint

MAX_SIZE = 65536
FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

# Close codes the docs give for bad input (docs/protocol.md): never 1011, never a hang.
JSON_CLOSES = {1007, 1009}
YJS_CLOSES = {1007, 1009, 4400, 4413, 4422}


class RawText(bytes):
    """A text frame of these bytes, UTF-8 or not (closed with 1007 when not)."""


async def _send(ws, frame: str | bytes) -> None:
    if isinstance(frame, RawText):
        async with ws.send_context():
            ws.protocol.send_text(frame)
    else:
        await ws.send(frame)


def _close_expected(frames: list, code: int) -> bool:
    """Is ``code`` what the frames sent deserve?"""
    if code == 1009:
        return any(len(frame) > MAX_SIZE for frame in frames)
    if code == 1007:
        return any(isinstance(frame, RawText) for frame in frames)
    return code in YJS_CLOSES


@pytest.fixture(scope="module")
def fuzz_server(database_url: str) -> Iterator[ServerProcess]:
    process = ServerProcess(database_url, log_name="fuzz", env={
        "NOTES_WS_RATE": "0", "NOTES_WS_MAX_SIZE": str(MAX_SIZE)}).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _new_note(server: ServerProcess, content: str = "seed text") -> str:
    response = httpx.post(server.url + "/notes", json={"title": "fuzz", "content": content})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _assert_alive(server: ServerProcess) -> None:
    assert server.process is not None and server.process.poll() is None, server.log()[-3000:]
    assert httpx.get(server.url + "/health", timeout=5).status_code == 200


def _assert_no_tracebacks(server: ServerProcess) -> None:
    log = server.log()
    assert "Traceback" not in log and "ERROR" not in log, log[-4000:]


# --- JSON frames --------------------------------------------------------------------------------

huge_numbers = st.sampled_from([10**30, -10**30, -1, 0, 2**53, 2**63, 1.5, -0.0, 1e308,
                                "NaN", "Infinity", "1", True, False, None])
wrong_values = st.one_of(huge_numbers, st.text(max_size=8), st.lists(st.integers(), max_size=3),
                         st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12)
ops = st.one_of(
    st.fixed_dictionaries({"retain": st.one_of(st.integers(-5, 40), huge_numbers)}),
    st.fixed_dictionaries({"delete": st.one_of(st.integers(-5, 40), huge_numbers)}),
    st.fixed_dictionaries({"insert": st.one_of(st.text(max_size=5), wrong_values)}),
    st.dictionaries(st.sampled_from(["retain", "insert", "delete", "x"]), wrong_values,
                    max_size=3),
    wrong_values)
deltas = st.one_of(st.lists(ops, max_size=5), wrong_values)
refs = st.one_of(st.none(), st.text(max_size=6), st.integers(), st.lists(st.integers(), max_size=2),
                 st.just("\ud800"), st.just({"a": [1]}))
revs = st.one_of(st.integers(-3, 5), huge_numbers)


def _message(kind: str, fields: dict) -> dict:
    return {"type": kind, **fields}


json_messages = st.one_of(
    st.builds(_message, st.just("edit"), st.fixed_dictionaries(
        {}, optional={"rev": revs, "delta": deltas, "ref": refs})),
    st.builds(_message, st.just("presence"), st.fixed_dictionaries(
        {}, optional={"rev": revs, "ref": refs, "cursor": st.one_of(
            wrong_values, st.fixed_dictionaries(
                {}, optional={"index": revs, "length": revs}))})),
    st.builds(_message, st.just("title"), st.fixed_dictionaries(
        {}, optional={"title": st.one_of(wrong_values, st.just("\ud800"),
                                         st.just("a\x00b"), st.just("t" * 300)),
                      "ref": refs})),
    st.builds(_message, st.one_of(wrong_values, st.sampled_from(["hello", "ack", ""])),
              st.dictionaries(st.text(max_size=4), json_values, max_size=3)),
)


def _json_text(message: dict) -> str:
    return json.dumps(message)  # ensure_ascii: a lone surrogate travels as "\ud800"


raw_texts = st.sampled_from([
    "[" * 10000 + "]" * 10000,
    '{"a":' * 10000 + "1" + "}" * 10000,
    '{"type":"edit","rev":0,"delta":' + "[" * 10000 + "]" * 10000 + "}",
    '{"type":"edit","rev":0,"delta":[],"ref":' + "[" * 5000 + "]" * 5000 + "}",
    '{"type":"presence","rev":0,"cursor":' + '{"a":' * 5000 + "1" + "}" * 5000 + "}",
    '{"type":"edit","rev":NaN,"delta":[]}',
    '{"type":"edit","rev":0,"delta":[{"retain":Infinity}]}',
    '{"type":"edit","rev":0,"delta":[{"retain":1e400}]}',
    '{"type":"edit","rev":0,"delta":[{"insert":"\\ud800"}]}',
    '{"type":"edit","rev":0,"delta":[{"insert":"\\udc00x\\ud83d"}],"ref":"\\udfff"}',
    '{"type":"title","title":"\\ud800","ref":"\\ud800"}',
    '{"type":"edit","rev":0,"delta":[{"retain":99999999}]}',
    '{"type":"edit","rev":0,"delta":[{"delete":99999999}]}',
    "", "null", "[]", "1e999", '"x"', "{", '{"type":', "\x00",
])
binary_frames = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"\xff\xfe", b'{"type":"edit","rev":0,"delta":[]}', b'{"a":"\xc3"}',
                     b'{"type":"title","title":"\xed\xa0\x80"}']))
json_frames = st.one_of(json_messages.map(_json_text), raw_texts, binary_frames)
OVERSIZED = "x" * (MAX_SIZE + 1)
not_utf8 = st.builds(RawText, st.sampled_from([b'{"type":"title","title":"\xed\xa0\x80"}',
                                               b"\xff", b'"\xc3"', b"\x80abc"]))
json_rounds = st.one_of(st.lists(json_frames, min_size=1, max_size=4), st.just([OVERSIZED]),
                        not_utf8.map(lambda frame: [frame]))


async def _json_round(server: ServerProcess, note_id: str, frames: list[str | bytes]) -> None:
    """Send the frames, then a probe that is always answered (an unknown type): every frame before
    it was handled by then. Nothing but garbage was sent, so nothing may have changed."""
    url = f"{server.ws_url}/notes/{note_id}/live?name=fuzz"
    async with ws_connect(url, proxy=None, max_size=None) as ws:
        hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert hello["type"] == "hello"
        for frame in frames:
            await _send(ws, frame)
        # (after a frame the server closes on, more data would turn its close into a reset, 1006)
        if frames != [OVERSIZED] and not isinstance(frames[0], RawText):
            await ws.send(json.dumps({"type": "probe", "ref": "probe"}))
        replies = []
        try:
            async with asyncio.timeout(10):
                while True:
                    reply = json.loads(await ws.recv())
                    replies.append(reply)
                    if reply.get("ref") == "probe" and reply["type"] == "error":
                        break
        except ConnectionClosed:
            assert ws.close_code in JSON_CLOSES, (ws.close_code, ws.close_reason, frames)
            assert _close_expected(frames, ws.close_code), (ws.close_code, frames)
        kinds = {reply["type"] for reply in replies}
        assert kinds <= {"error", "ack", "title", "join", "leave", "presence", "saved"}, replies
        # An ack waits for its commit, an error does not: the probe's may come first. Nobody
        # else writes meanwhile, so every revision after hello's is one of ours, acknowledged.
        note = httpx.get(f"{server.url}/notes/{note_id}").json()
        if ws.close_code is None:
            acks = sum(reply["type"] == "ack" for reply in replies)
            async with asyncio.timeout(10):
                while acks < note["rev"] - hello["rev"]:
                    reply = json.loads(await ws.recv())
                    acks += reply["type"] == "ack"
            assert acks == note["rev"] - hello["rev"], (replies, frames)
            if not acks:
                assert note["content"] == hello["content"], frames
        else:
            assert (note["rev"], note["content"]) == (hello["rev"], hello["content"])


async def _good_json_turn(live: LiveClient, yjs: PyYjsClient, turn: int) -> None:
    await live.insert(0, f"j{turn} ")
    with yjs.doc.transaction():
        yjs.content.insert(len(str(yjs.content)), f" y{turn}")
    await live.synced()


async def _good_clients(server: ServerProcess, note_id: str) -> tuple[LiveClient, PyYjsClient]:
    """The well-behaved pair beside the fuzzer: a JSON client and a Yjs client."""
    live = await LiveClient.connect(server.url, note_id, "good")
    yjs = PyYjsClient(server.ws_url, note_id)
    await yjs.__aenter__()
    return live, yjs


def test_json_socket_fuzz(fuzz_server: ServerProcess, loop: asyncio.AbstractEventLoop) -> None:
    _fuzz_beside_good_clients(fuzz_server, loop, json_rounds, _json_round)


async def _wait_converged(live: LiveClient, yjs: PyYjsClient, timeout: float = 10) -> None:
    await live.synced()
    async with asyncio.timeout(timeout):
        while live.text != str(yjs.content):
            await asyncio.sleep(0.01)


async def _close(live: LiveClient, yjs: PyYjsClient) -> None:
    with contextlib.suppress(Exception):
        await live.close()
    with contextlib.suppress(Exception):
        await yjs.__aexit__(None, None, None)


# --- Yjs frames ---------------------------------------------------------------------------------

def _varuint_garbage(data: bytes) -> bytes:
    return data


any_values = st.sampled_from([
    bytes([127]), bytes([126]), bytes([125, 0x80, 0x80, 0x01]), bytes([119]) + write_string("x"),
    bytes([117]) + write_uint(2**40), bytes([118]) + write_uint(3),
    bytes([117, 1]) * 2000 + bytes([127]),  # an array in an array in ... 2,000 deep
    bytes([118, 1, 1, 0x61]) * 2000 + bytes([127]),
    bytes([116]) + write_uint(10**9), bytes([124, 0]), bytes([200]),
])


def _update(structs: bytes, count: int = 1, client: int = 7, clock: int = 0,
            deletes: bytes = b"\x00") -> bytes:
    return write_uint(1) + write_uint(count) + write_uint(client) + write_uint(clock) + structs + \
        deletes


structs = st.one_of(
    st.binary(max_size=20),
    st.builds(lambda text: bytes([4 | 0x00]) + write_uint(1) + write_string("content")
              + write_string(text), st.text(max_size=5)),  # a string item at the root
    st.builds(lambda body: bytes([8]) + write_uint(1) + write_string("content") + write_uint(1)
              + body, any_values),  # an "any" item
    st.builds(lambda body: bytes([9]) + write_uint(1) + write_string("x") + write_string("guid")
              + body, any_values),  # a subdocument
    st.builds(lambda c, k: bytes([0x84]) + write_uint(c) + write_uint(k) + write_string("z"),
              st.integers(0, 2**53 - 1), st.integers(0, 2**53 - 1)),  # an origin that is nowhere
    st.builds(lambda n: bytes([7]) + write_uint(1) + write_string("content") + write_uint(n),
              st.integers(0, 20)),  # a type item of any kind under the content
)
updates = st.one_of(
    st.binary(max_size=30),
    st.builds(_update, structs, st.integers(0, 3), st.integers(0, 2**53 - 1),
              st.integers(0, 2**32)),
    st.builds(lambda c, k, n: b"\x00" + write_uint(1) + write_uint(c) + write_uint(1)
              + write_uint(k) + write_uint(n), st.integers(0, 2**53 - 1),
              st.integers(0, 2**53 - 1), st.integers(0, 2**53 - 1)),  # delete nothing known
    st.just(b"\x00\x00"), st.just(bytes([0xFF] * 9)), st.just(write_uint(2**40)),
)
awareness_updates = st.one_of(
    st.binary(max_size=30),
    st.builds(lambda cid, clock, state: write_uint(1) + write_uint(cid) + write_uint(clock)
              + write_string(state), st.integers(0, 2**53 - 1), st.integers(0, 2**53 - 1),
              st.one_of(st.text(max_size=10), json_values.map(json.dumps),
                        st.sampled_from(["[" * 10000 + "]" * 10000, '{"a":' * 40 + "1"
                                         + "}" * 40, "NaN", '"\\ud800"', "1e999"]))),
    st.builds(lambda n: write_uint(n) + b"\x01", st.integers(0, 2**53 - 1)),
)
yjs_frames = st.one_of(
    st.binary(max_size=40),  # garbage
    st.sampled_from([b"", b"\x80", b"\xff" * 9, b"\x00", b"\x00\x80", b"\x00\x00",
                     b"\x00\x00\xff\xff\xff\xff\x0f", b"\x01\x85\x80\x80\x80\x80\x01",
                     b"\x03\x00", b"\x02\x00\x01a", b"\x04", b"\x00\x03\x00"]),
    st.builds(lambda step, payload: b"\x00" + write_uint(step) + write_bytes(payload),
              st.sampled_from([0, 1, 2, 3]), updates),
    st.builds(lambda step, payload: b"\x00" + write_uint(step) + write_bytes(payload)[:-1],
              st.sampled_from([0, 1, 2]), updates.filter(len)),  # truncated
    st.builds(lambda payload: b"\x01" + write_bytes(payload), awareness_updates),
    st.builds(lambda payload, extra: b"\x00\x02" + write_bytes(payload) + extra,
              updates, st.binary(min_size=1, max_size=3)),  # trailing bytes
    st.text(max_size=10),  # a text frame
    not_utf8,
    st.just(b"\x00\x02" + write_bytes(b"\x00" * MAX_SIZE)),  # oversized
)


async def _observe(server: ServerProcess, note_id: str) -> tuple[str, bytes]:
    raw = await (await RawYjs.open(server.ws_url, note_id)).handshake()
    try:
        return raw.text(), raw.doc.get_state()
    finally:
        await raw.close()


async def _yjs_round(server: ServerProcess, note_id: str, frames: list[bytes | str]) -> None:
    """Send the frames one at a time, each followed by a probe (sync step 1, always answered with
    step 2): refused, the socket is closed with a documented code and nothing changed."""
    before = await _observe(server, note_id)
    raw = await (await RawYjs.open(server.ws_url, note_id, max_size=None)).handshake()
    try:
        for frame in frames:
            await _send(raw.ws, frame)
            await raw.send(b"\x00\x00" + write_bytes(b"\x00"))
            try:
                async with asyncio.timeout(10):
                    while True:
                        kind, step, _ = await raw.recv(timeout=10)
                        if (kind, step) == (0, 1):
                            break
            except ConnectionClosed:
                code = raw.ws.close_code
                assert code in YJS_CLOSES, (code, raw.ws.close_reason, frame)
                assert _close_expected([frame], code), (code, frame)
                assert await _observe(server, note_id) == before, frame
                return
            before = await _observe(server, note_id)  # (an accepted frame may change it)
    finally:
        await raw.close()


def test_yjs_socket_fuzz(fuzz_server: ServerProcess, loop: asyncio.AbstractEventLoop) -> None:
    _fuzz_beside_good_clients(fuzz_server, loop, st.lists(yjs_frames, min_size=1, max_size=3),
                              _yjs_round)


def _fuzz_beside_good_clients(server: ServerProcess, loop: asyncio.AbstractEventLoop,
                              rounds, one_round) -> None:
    """Each example: the good pair edits and converges, then ``one_round`` sends the fuzzer's
    frames on a socket of its own (and checks them); the server must live through it. At the end
    the good pair and GET agree, and the log holds no traceback."""
    note_id = _new_note(server)
    live, yjs = loop.run_until_complete(_good_clients(server, note_id))
    turns = iter(range(10**6))

    @FUZZ
    @given(rounds)
    def example(frames: list[str | bytes]) -> None:
        async def body():
            await _good_json_turn(live, yjs, next(turns))
            await _wait_converged(live, yjs)
            await one_round(server, note_id, frames)

        loop.run_until_complete(asyncio.wait_for(body(), 30))
        _assert_alive(server)

    try:
        example()
        loop.run_until_complete(_wait_converged(live, yjs))
        note = httpx.get(f"{server.url}/notes/{note_id}").json()
        assert math.isfinite(note["rev"])
        assert note["content"] == live.text == str(yjs.content)
    finally:
        loop.run_until_complete(_close(live, yjs))
    _assert_no_tracebacks(server)


# --- what the fuzzer found (regressions) -------------------------------------------------------

def _log_since(server: ServerProcess, mark: int) -> str:
    return server.log()[mark:]


def test_a_ref_with_a_lone_surrogate_is_bad_json(fuzz_server: ServerProcess,
                                                  loop: asyncio.AbstractEventLoop) -> None:
    """``"ref":"\\ud800"`` was looked up in the update log (a UTF-8 error in the driver: 1011,
    a traceback) and could not have been echoed either; now it is ``bad_json``."""
    note_id, mark = _new_note(fuzz_server, "abc"), len(fuzz_server.log())

    async def body():
        async with ws_connect(f"{fuzz_server.ws_url}/notes/{note_id}/live", proxy=None) as ws:
            hello = json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "edit", "rev": hello["rev"], "ref": "\ud800",
                                      "delta": [{"insert": "x"}]}))  # (as "\\ud800")
            reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert (reply["type"], reply["code"], reply["ref"]) == ("error", "bad_json", None)
            await ws.send(json.dumps({"type": "edit", "rev": hello["rev"], "ref": {"k": "\ud800"},
                                      "delta": [{"insert": "x"}]}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert (reply["type"], reply["code"]) == ("error", "bad_json")
            await ws.send(json.dumps({"type": "edit", "rev": hello["rev"], "ref": "fine",
                                      "delta": [{"insert": "y"}]}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert (reply["type"], reply["ref"], reply["rev"]) == ("ack", "fine", hello["rev"] + 1)

    loop.run_until_complete(body())
    assert httpx.get(f"{fuzz_server.url}/notes/{note_id}").json()["content"] == "yabc"
    assert "ERROR" not in _log_since(fuzz_server, mark)


def test_a_ref_with_a_nul_does_not_stall_the_update_log(fuzz_server: ServerProcess,
                                                        loop: asyncio.AbstractEventLoop) -> None:
    """A ref PostgreSQL cannot store (NUL) went into the update log with its edit: the commit
    failed, was retried for ever, and no edit of anyone was acknowledged again. Such a ref is
    echoed but not kept (nor recognised later), like a long one."""
    note_id, mark = _new_note(fuzz_server, ""), len(fuzz_server.log())

    async def body():
        async with ws_connect(f"{fuzz_server.ws_url}/notes/{note_id}/live", proxy=None) as ws:
            hello = json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "edit", "rev": hello["rev"], "ref": "a\x00b",
                                      "delta": [{"insert": "x"}]}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert (reply["type"], reply["ref"]) == ("ack", "a\x00b")
            live = await LiveClient.connect(fuzz_server.url, note_id, "after")
            try:
                await live.insert(0, "y")
                await live.synced(timeout=5)  # (an ack: the log commits again)
            finally:
                await live.close()

    loop.run_until_complete(body())
    assert httpx.get(f"{fuzz_server.url}/notes/{note_id}").json()["content"] == "yx"
    assert "ERROR" not in _log_since(fuzz_server, mark)


def test_frames_then_a_quick_close_are_no_server_error(fuzz_server: ServerProcess,
                                                       loop: asyncio.AbstractEventLoop) -> None:
    """A client that sends frames and closes at once: Sanic's ``recv`` raises its own
    ``WebsocketClosed`` for the frames still queued, which was logged as a server failure."""
    note_id, mark = _new_note(fuzz_server, "the text " * 20000), len(fuzz_server.log())

    async def body():
        for _ in range(10):
            raw = await (await RawYjs.open(fuzz_server.ws_url, note_id)).handshake()
            for _ in range(30):  # sync step 1 from nothing: answered with the whole note
                await raw.send(b"\x00\x00" + write_bytes(b"\x00"))
            await raw.close()
            async with ws_connect(f"{fuzz_server.ws_url}/notes/{note_id}/live",
                                  proxy=None) as ws:
                await ws.recv()
                for _ in range(20):
                    await ws.send('{"type":"presence","rev":0,"cursor":null}')

    loop.run_until_complete(body())
    _assert_alive(fuzz_server)
    assert "Traceback" not in _log_since(fuzz_server, mark)


@pytest.mark.parametrize("path", ["notes/{}/live", "yjs/{}"])
def test_a_text_frame_of_invalid_utf8_closes_with_1007(fuzz_server: ServerProcess,
                                                        loop: asyncio.AbstractEventLoop,
                                                        path: str) -> None:
    """Sanic's frame assembler raised inside its reading task: the socket hung, open for ever
    (found fuzzing text frames)."""
    note_id, mark = _new_note(fuzz_server, "the text " * 20000), len(fuzz_server.log())

    async def body():
        for _ in range(5):
            async with ws_connect(f"{fuzz_server.ws_url}/{path.format(note_id)}", proxy=None,
                                  max_size=None) as ws:
                await ws.recv()
                for _ in range(10):  # (the server is busy with these when the bad one comes)
                    await ws.send(b"\x00\x00" + write_bytes(b"\x00"))
                await _send(ws, RawText(b'{"type":"title","title":"\xed\xa0\x80"}'))
                with contextlib.suppress(ConnectionClosed):
                    async with asyncio.timeout(10):
                        while True:
                            await ws.recv()
                assert ws.close_code == 1007

    loop.run_until_complete(body())
    _assert_alive(fuzz_server)
    assert "Traceback" not in _log_since(fuzz_server, mark)
    assert httpx.get(f"{fuzz_server.url}/notes/{note_id}").json()["title"] == "fuzz"
