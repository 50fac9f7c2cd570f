"""Per-socket rate limits: the token bucket (pure) and both sockets of a real server past it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from conftest import ServerProcess
from hypothesis import given, settings
from hypothesis import strategies as st
from live_helpers import Raw, create_note
from yjs_py import PyYjsClient, RawYjs

from notes.client import LiveClient
from notes.collab.lib0 import write_string, write_uint
from notes.collab.limits import RateLimit, TokenBucket, Verdict, rate_limit
from notes.collab.yjs import (
    MESSAGE_AWARENESS,
    MESSAGE_QUERY_AWARENESS,
    SYNC_UPDATE,
    awareness_message,
    sync_message,
)
from notes.config import Settings

RATE, BURST = 5, 5  # the test server's limit (NOTES_WS_RATE, NOTES_WS_BURST)


# --- the bucket -------------------------------------------------------------------------------


def test_a_bucket_starts_full_refills_at_its_rate_and_holds_at_most_its_burst():
    bucket = TokenBucket(rate=2, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(0.4)  # 0.8 of a token
    assert bucket.take(0.5)  # 1.0
    assert not bucket.take(0.5)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]  # capped at 3
    assert not bucket.take(50.0)  # a clock that goes back refills nothing


def test_a_flood_gets_its_burst_then_as_many_refusals_then_the_close():
    limit = RateLimit(rate=10, burst=4, now=0.0)
    verdicts = [limit.check(0.0) for _ in range(10)]
    assert verdicts == [Verdict.ADMIT] * 4 + [Verdict.REFUSE] * 4 + [Verdict.CLOSE] * 2
    # A second later both allowances are back.
    assert [limit.check(1.0) for _ in range(9)] == (
        [Verdict.ADMIT] * 4 + [Verdict.REFUSE] * 4 + [Verdict.CLOSE])


def test_allows_counts_nothing_until_charged():
    limit = RateLimit(rate=1, burst=2, now=0.0)
    assert all(limit.allows(0.0) for _ in range(10))  # (a Yjs echo: looked at, not counted)
    limit.charge(0.0)
    limit.charge(0.0)
    assert not limit.allows(0.0)
    assert [limit.refuse(0.0) for _ in range(3)] == [Verdict.REFUSE] * 2 + [Verdict.CLOSE]
    assert limit.allows(1.0) and limit.check(1.0) is Verdict.ADMIT


def test_rate_zero_means_no_limit_and_the_settings_are_checked():
    assert rate_limit(0, 200) is None
    assert isinstance(rate_limit(50, 200), RateLimit)
    settings = Settings.from_env({"NOTES_WS_RATE": "2.5", "NOTES_WS_BURST": "7"})
    assert (settings.ws_rate, settings.ws_burst) == (2.5, 7)
    assert (Settings().ws_rate, Settings().ws_burst) == (50.0, 200)
    with pytest.raises(ValueError, match="NOTES_WS_BURST"):
        Settings.from_env({"NOTES_WS_BURST": "0"})
    with pytest.raises(ValueError, match="NOTES_WS_RATE"):
        Settings.from_env({"NOTES_WS_RATE": "-1"})


rates = st.floats(min_value=0.5, max_value=500)
bursts = st.integers(min_value=1, max_value=300)
gaps = st.lists(st.floats(min_value=0, max_value=2), max_size=300)


@settings(max_examples=300, deadline=None)
@given(rates, bursts, gaps)
def test_no_interval_admits_more_than_the_burst_plus_its_refill(rate, burst, gaps):
    bucket = TokenBucket(rate, burst, now=0.0)
    now, admitted = 0.0, []
    for gap in gaps:
        now += gap
        if bucket.take(now):
            admitted.append(now)
    for i, start in enumerate(admitted):
        for j in range(i, len(admitted)):
            assert j - i + 1 <= burst + (admitted[j] - start) * rate + 1e-6


@settings(max_examples=300, deadline=None)
@given(rates, bursts, st.lists(st.floats(min_value=1, max_value=3), max_size=300))
def test_a_client_within_the_rate_is_never_refused(rate, burst, spacings):
    limit = RateLimit(rate, burst, now=0.0)
    now = 0.0
    for spacing in spacings:  # in units of 1/rate: at the rate or slower
        now += spacing / rate
        assert limit.check(now) is Verdict.ADMIT


@settings(max_examples=300, deadline=None)
@given(rates, bursts, st.lists(st.floats(min_value=0.5, max_value=3), max_size=300),
       st.integers(min_value=0, max_value=300))
def test_a_client_below_twice_the_rate_is_refused_at_worst_never_closed(
        rate, burst, spacings, flood):
    limit = RateLimit(rate, burst, now=0.0)
    now = 0.0
    for _ in range(min(flood, burst)):  # even after a burst at once
        assert limit.check(now) is Verdict.ADMIT
    for spacing in spacings:  # in units of 1/rate: up to twice the rate
        now += spacing / rate
        assert limit.check(now) is not Verdict.CLOSE


@settings(max_examples=200, deadline=None)
@given(rates, bursts, st.integers(min_value=1, max_value=1000))
def test_a_flood_is_closed_after_at_most_two_bursts(rate, burst, extra):
    limit = RateLimit(rate, burst, now=0.0)
    verdicts = [limit.check(0.0) for _ in range(2 * burst + extra)]
    assert verdicts.count(Verdict.ADMIT) == burst
    assert verdicts.count(Verdict.REFUSE) == burst
    assert verdicts[2 * burst:] == [Verdict.CLOSE] * extra


# --- a real server ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slow(database_url: str) -> Iterator[ServerProcess]:
    """A server with a rate limit low enough to hit by hand."""
    process = ServerProcess(database_url, log_name="rate-limited-server",
                            env={"NOTES_WS_RATE": str(RATE), "NOTES_WS_BURST": str(BURST)})
    try:
        yield process.start()
    finally:
        process.stop()


@pytest.fixture
async def ahttp(slow: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=slow.url, timeout=30) as client:
        yield client


async def content_of(ahttp: httpx.AsyncClient, note_id: str) -> str:
    response = await ahttp.get(f"/notes/{note_id}")
    assert response.status_code == 200, response.text
    return response.json()["content"]


async def test_a_json_flood_is_refused_then_closed_and_changes_only_what_was_accepted(
        slow, ahttp):
    note_id = await create_note(ahttp, content="|")
    good = await LiveClient.connect(slow.url, note_id, name="good")
    flooder = await Raw.open(slow.url, note_id, name="flooder")
    try:
        rev = flooder.hello["rev"]
        tokens = [f"<{i}>" for i in range(40)]
        started = time.monotonic()
        for i, token in enumerate(tokens):
            await flooder.send({"type": "edit", "rev": rev, "delta": [{"insert": token}],
                                "ref": f"f{i}"})
        code, seen = await flooder.closed(timeout=10)
        elapsed = time.monotonic() - started
        assert code == 1008 and flooder.ws.close_reason == "rate limit exceeded"
        refused = [m for m in seen if m["type"] == "error"]
        assert {m["code"] for m in refused} == {"rate_limited"}
        refused_refs = {m["ref"] for m in refused}
        # Only what was admitted is in the note (the acks of those edits, held until they are
        # stored, do not go out on a socket closed meanwhile: its client resends them, as after
        # any lost connection, and the server recognises their refs). All were made on one
        # revision at the start, and the first applied stays first.
        text = await content_of(ahttp, note_id)
        accepted = [i for i, token in enumerate(tokens) if token in text]
        assert text == "".join(tokens[i] for i in accepted) + "|"
        assert not {f"f{i}" for i in accepted} & refused_refs
        # Each message before the close was admitted or refused, none after it was applied.
        handled = sorted(accepted + [int(ref[1:]) for ref in refused_refs])
        assert handled == list(range(len(handled))) and len(handled) < len(tokens)
        # The burst, plus what refilled while the flood lasted; as many refusals.
        assert BURST <= len(accepted) <= BURST + RATE * elapsed + 1, (accepted, elapsed)
        assert BURST <= len(refused_refs) <= BURST + RATE * elapsed + 1
        # The well-behaved client on the same note was never refused and keeps working.
        await good.synced(timeout=10)
        await good.insert(len(good.text), "ok")
        await good.synced(timeout=10)
        assert good.errors == []
        assert good.text == text + "ok" == await content_of(ahttp, note_id)
    finally:
        await flooder.close()
        await good.close()


async def test_the_python_client_pauses_and_resends_an_edit_refused_as_rate_limited(
        slow, ahttp):
    note_id = await create_note(ahttp)
    client = await LiveClient.connect(slow.url, note_id, name="hasty")
    try:
        typed = ""
        for i in range(3 * BURST):  # one edit a round trip: far faster than the limit
            await client.insert(len(client.text), str(i % 10))
            typed += str(i % 10)
            await client.synced(timeout=10)
        assert client.text == typed == await content_of(ahttp, note_id)
        assert client.errors and {e["code"] for e in client.errors} == {"rate_limited"}
        assert client.connected and client.closed_code is None
    finally:
        await client.close()


async def test_a_presence_flood_is_refused_too(slow, ahttp):
    note_id = await create_note(ahttp, content="abc")
    flooder = await Raw.open(slow.url, note_id, name="flooder")
    try:
        cursor = {"type": "presence", "rev": flooder.hello["rev"],
                  "cursor": {"index": 1, "length": 0}}
        for _ in range(3 * BURST):
            await flooder.send(cursor)
        code, seen = await flooder.closed(timeout=10)
        assert code == 1008
        errors = [m for m in seen if m["type"] == "error"]
        assert errors and all(m["code"] == "rate_limited" and m["ref"] is None for m in errors)
    finally:
        await flooder.close()


async def test_a_flooding_yjs_client_is_closed_and_its_refused_updates_change_nothing(
        slow, ahttp):
    note_id = await create_note(ahttp, content="|")
    good_yjs = PyYjsClient(slow.ws_url, note_id)
    async with good_yjs:
        good_json = await LiveClient.connect(slow.url, note_id, name="good")
        flooder = await (await RawYjs.open(slow.ws_url, note_id)).handshake()
        try:
            await good_yjs.wait_content("|")
            content = flooder.doc.get("content", type=type(good_yjs.content))
            tokens = [f"<{i}>" for i in range(30)]
            started = time.monotonic()
            for token in tokens:
                state = flooder.doc.get_state()
                content.insert(0, token)
                await flooder.send(sync_message(SYNC_UPDATE, flooder.doc.get_update(state)))
            code, reason = await flooder.closed(timeout=10)
            elapsed = time.monotonic() - started
            assert (code, reason) == (1008, "rate limit exceeded")
            # The updates within the burst were applied (the empty sync step 2 changed
            # nothing, so it did not count), the first one past it closed the socket, none
            # after it was applied.
            text = await content_of(ahttp, note_id)
            accepted = text.removesuffix("|")
            assert text.endswith("|") and accepted.startswith("<")
            count = accepted.count("<")
            assert accepted == "".join(reversed(tokens[:count]))
            assert BURST <= count <= BURST + RATE * elapsed + 1, (count, elapsed)
            # The well-behaved clients of both protocols carry on and converge.
            await good_yjs.wait_content(text)
            await good_json.synced(timeout=10)
            await good_json.insert(len(good_json.text), "ok")
            await good_yjs.wait_content(text + "ok")
            await good_json.synced(timeout=10)
            assert good_json.text == text + "ok" == await content_of(ahttp, note_id)
        finally:
            await flooder.close()
            await good_json.close()


async def test_updates_a_yjs_client_sends_back_do_not_count(slow, ahttp):
    """pycrdt's Provider sends every update it receives back: on a busy note that is more than
    the limit, but it changes nothing, so it does not count."""
    note_id = await create_note(ahttp)
    writers = [await LiveClient.connect(slow.url, note_id, name=f"w{i}") for i in range(4)]
    try:
        async with PyYjsClient(slow.ws_url, note_id) as echoer:
            for round_ in range(BURST - 1):  # 16 edits, each sent back by the echoer
                for i, writer in enumerate(writers):
                    await writer.insert(0, f"<{i}.{round_}>")
                    await writer.synced(timeout=10)
            text = writers[-1].text
            assert len(text) == 4 * (BURST - 1) * 5
            await echoer.wait_content(text)
            # Still open, and its own changes count as ever.
            echoer.content.insert(0, "y")
            await writers[0].wait_for(lambda: writers[0].text == "y" + text)
            assert echoer.ws.close_code is None
            assert all(w.errors == [] for w in writers)
    finally:
        for writer in writers:
            await writer.close()


async def test_yjs_awareness_past_the_limit_is_dropped_then_the_socket_closed(slow, ahttp):
    note_id = await create_note(ahttp)
    flooder = await (await RawYjs.open(slow.ws_url, note_id)).handshake()
    watcher = await Raw.open(slow.url, note_id, name="watcher")
    try:
        def state_of(clock: int) -> bytes:
            state = f'{{"user":{{"name":"n{clock}"}}}}'
            return awareness_message(
                write_uint(1) + write_uint(4242) + write_uint(clock) + write_string(state))

        # A state the server has already (as y-websocket sends back every state it gets)
        # changes nothing and does not count.
        await flooder.send(state_of(1))
        assert (await watcher.next("presence"))["name"] == "n1"
        for _ in range(3 * BURST):
            await flooder.send(state_of(1))
        await flooder.send(bytes((MESSAGE_QUERY_AWARENESS,)))
        awareness = 0
        while awareness < 2:  # n1 relayed, then the answer to the query: still open
            awareness += (await flooder.recv())[0] == MESSAGE_AWARENESS
        # New states do count: n1 took a token; then the burst, then refusals, then 1008.
        started = time.monotonic()
        for clock in range(2, 3 * BURST + 2):
            await flooder.send(state_of(clock))
        code, reason = await flooder.closed(timeout=10)
        elapsed = time.monotonic() - started
        assert (code, reason) == (1008, "rate limit exceeded")
        # The JSON peer heard of the admitted names only (after n1, heard above).
        names = []
        while True:
            message = await watcher.next("presence", "leave")
            if message["type"] == "leave":
                break
            names.append(int(message["name"][1:]))
        assert names[:BURST - 1] == list(range(2, BURST + 1)) and names == sorted(names)
        assert len(names) <= BURST - 1 + RATE * elapsed + 1, (names, elapsed)
    finally:
        await flooder.close()
        await watcher.close()


async def test_a_typist_on_the_default_limit_is_never_refused(server, ahttp_default):
    """The default (50/s, bursts of 200) leaves an OT client typing flat out untouched."""
    note_id = await create_note(ahttp_default)
    client = await LiveClient.connect(server.url, note_id, name="typist")
    try:
        for i in range(300):
            await client.insert(len(client.text), str(i % 10))
            if i % 3 == 0:
                await asyncio.sleep(0)  # let acks in: the client sends its buffer on each
        await client.synced(timeout=10)
        assert client.errors == []
        assert await content_of(ahttp_default, note_id) == client.text
    finally:
        await client.close()


@pytest.fixture
async def ahttp_default(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client
