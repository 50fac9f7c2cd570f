"""Keepalive: a peer that stops answering pings is dropped after the ping timeout."""

from __future__ import annotations

import asyncio
import base64
import os

import httpx
import pytest
from conftest import ServerProcess

from notes.client import LiveClient


@pytest.fixture(scope="module")
def pinging_server(database_url):
    server = ServerProcess(database_url, env={"NOTES_WS_PING_INTERVAL": "0.3",
                                              "NOTES_WS_PING_TIMEOUT": "0.3"},
                           log_name="keepalive").start()
    yield server
    server.stop()


async def open_silent_socket(port: int, path: str) -> tuple[asyncio.StreamReader,
                                                             asyncio.StreamWriter]:
    """A websocket handshake by hand, then silence: this peer never reads, so never pongs."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {path}?name=silent HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    await writer.drain()
    status = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert status.startswith(b"HTTP/1.1 101"), status
    return reader, writer


@pytest.mark.parametrize("protocol", ["json", "yjs"])
async def test_a_peer_that_stops_answering_pings_is_dropped(pinging_server, protocol):
    note = httpx.post(pinging_server.url + "/notes", json={"title": "k", "content": "é"}).json()
    path = f"/notes/{note['id']}/live" if protocol == "json" else f"/yjs/{note['id']}"
    async with await LiveClient.connect(pinging_server.url, note["id"], name="watcher",
                                        reconnect=False) as watcher:
        _, writer = await open_silent_socket(pinging_server.port, path)
        try:
            await watcher.wait_for(lambda: any(p["name"] == "silent"
                                               for p in watcher.peers.values()), timeout=10)
            # Pings every 0.3 s, 0.3 s to answer: the silent peer is gone well within 10 s, while
            # the watcher (whose client answers pings) stays connected.
            await watcher.wait_for(lambda: not watcher.peers, timeout=10)
            assert watcher.connected
            await watcher.insert(0, "😀")
            await watcher.synced()
        finally:
            writer.close()
