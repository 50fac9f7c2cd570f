"""Faults from the network side: a client process that is paused (its packets go unanswered),
slow and idle HTTP connections (slowloris). Real processes and sockets throughout."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from conftest import ROOT, ServerProcess

from notes.client import LiveClient

# A live client in a process of its own: connects, says so, then idles (its library answers
# pings for as long as the process runs).
PAUSED_CLIENT = """
import asyncio, sys
from notes.client import LiveClient

async def main():
    client = await LiveClient.connect(sys.argv[1], sys.argv[2], name="paused", reconnect=False)
    await client.set_cursor({"index": 0, "length": 0})
    print("connected", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def strict_server(database_url: str) -> Iterator[ServerProcess]:
    server = ServerProcess(database_url, env={
        "NOTES_WS_PING_INTERVAL": "1", "NOTES_WS_PING_TIMEOUT": "1",
        "NOTES_REQUEST_TIMEOUT": "1", "NOTES_KEEP_ALIVE_TIMEOUT": "1",
    }, log_name="faults").start()
    yield server
    server.stop()


async def test_a_paused_client_is_dropped_and_slows_nobody(strict_server: ServerProcess):
    """SIGSTOP: the client neither reads nor answers pings (as when its packets are dropped).
    The others' edits go on being acknowledged meanwhile; the ping timeout drops it and its
    presence is removed."""
    note = httpx.post(strict_server.url + "/notes", json={"title": "p", "content": ""}).json()
    paused = subprocess.Popen([sys.executable, "-c", PAUSED_CLIENT, strict_server.url,
                               note["id"]], stdout=subprocess.PIPE, cwd=ROOT)
    try:
        assert paused.stdout is not None
        assert paused.stdout.readline().strip() == b"connected"
        async with await LiveClient.connect(strict_server.url, note["id"], name="typist",
                                            reconnect=False) as typist:
            await typist.wait_for(lambda: any(peer["name"] == "paused" and peer["cursor"]
                                              for peer in typist.peers.values()), timeout=10)
            paused.send_signal(signal.SIGSTOP)
            # The typist's edits are acknowledged one by one while the paused peer is still in
            # the room (it is dropped only after a ping interval and a ping timeout).
            still_there = 0
            for char in "while it sleeps":
                await typist.insert(len(typist.text), char)
                await typist.synced(timeout=5)
                still_there += any(peer["name"] == "paused" for peer in typist.peers.values())
            assert still_there > 0, "the paused peer was dropped before the test could type"
            dropped = time.monotonic()
            await typist.wait_for(lambda: not typist.peers, timeout=10)
            assert time.monotonic() - dropped < 10
            assert typist.connected
            stored = httpx.get(f"{strict_server.url}/notes/{note['id']}").json()
            assert stored["content"] == "while it sleeps"
    finally:
        paused.send_signal(signal.SIGCONT)
        paused.kill()
        paused.wait()


async def test_a_stalled_request_is_cut_by_the_request_timeout(strict_server: ServerProcess):
    """Half a request head, then silence (slowloris): the server closes the connection after
    NOTES_REQUEST_TIMEOUT and answers everyone else meanwhile. (Sanic restarts that timeout on
    every byte received, so a client dripping a byte a second is not cut by it:
    docs/operations.md says what does.)"""
    reader, writer = await asyncio.open_connection("127.0.0.1", strict_server.port)
    try:
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        await writer.drain()
        async with httpx.AsyncClient() as http:
            assert (await http.get(strict_server.url + "/health")).status_code == 200
        answer = await asyncio.wait_for(reader.read(), 10)  # a 408, then the end
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert reader.at_eof()
    finally:
        writer.close()


async def test_an_idle_keep_alive_connection_is_closed(strict_server: ServerProcess):
    reader, writer = await asyncio.open_connection("127.0.0.1", strict_server.port)
    try:
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        await asyncio.wait_for(reader.readexactly(length), 10)
        # Then nothing: NOTES_KEEP_ALIVE_TIMEOUT (1 s here) closes the connection.
        assert await asyncio.wait_for(reader.read(), 10) == b""
    finally:
        writer.close()
