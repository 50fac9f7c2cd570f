"""PostgreSQL stopped for 20 s while clients of both protocols type and REST writes arrive.

The server runs on a PostgreSQL of its own (this test stops it; the session's cluster goes on).
While the database is down: the server keeps running, REST answers 503 problem+json, ``/health``
says 503, and live edits are not acknowledged (an ack means stored). Once it is back, every edit
made meanwhile is stored and acknowledged, and every client converges on the same text.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import ServerProcess
from live_helpers import Db, RecordingClient, create_note
from yjs_py import PyYjsClient

from notes.client import LiveClient
from notes.store.embedded import EmbeddedPostgres
from notes.store.migrate import upgrade

OUTAGE = 20.0  # seconds PostgreSQL stays down


@pytest.fixture
def own_database(tmp_path: Path) -> Iterator[list[EmbeddedPostgres]]:
    """``[the running cluster]``: the test replaces it when it restarts PostgreSQL."""
    cluster = [EmbeddedPostgres(tmp_path / "db")]
    upgrade(cluster[0].start())
    yield cluster
    cluster[0].stop()


async def _health(http: httpx.AsyncClient) -> int:
    try:
        return (await http.get("/health", timeout=5)).status_code
    except httpx.HTTPError:
        return 0


def _problem(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == status


@pytest.mark.timeout(180)
async def test_postgres_stopped_for_20_seconds(own_database: list[EmbeddedPostgres]) -> None:
    url = own_database[0].url
    server = ServerProcess(url, log_name="outage").start()
    db = Db(url)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            note_id = await create_note(http, "outage", "start ")
            typist = await RecordingClient.connect(server.url, note_id, name="typist")
            watcher = await LiveClient.connect(server.url, note_id, name="watcher")
            async with PyYjsClient(server.ws_url, note_id) as yjs:
                await typist.insert(0, "before ")
                await typist.synced()

                own_database[0].stop()
                stopped = time.monotonic()
                deadline = stopped + 10
                while await _health(http) != 503:
                    assert time.monotonic() < deadline, "/health still says ok"
                    await asyncio.sleep(0.05)

                # REST: 503 problem+json, for reads and writes; nothing changes.
                _problem(await http.get(f"/notes/{note_id}"), 503)
                _problem(await http.put(f"/notes/{note_id}",
                                        json={"title": "outage", "content": "replaced"}), 503)
                _problem(await http.post("/notes", json={"title": "lost", "content": ""}), 503)
                _problem(await http.get("/notes"), 503)
                _problem(await http.post(f"/notes/{note_id}/edits",
                                         json={"rev": typist.state.rev,
                                               "delta": [{"insert": "lost "}]}), 503)

                # Live: the typist's edits wait for their ack; the Yjs client types too.
                acks_before = len(typist.of_type("ack"))
                for char in "during":
                    await typist.insert(len(typist.text), char)
                yjs.content.insert(0, "yjs ")

                # For the rest of the outage: the server keeps running, /health keeps telling
                # the truth, and no edit made during the outage is acknowledged.
                while time.monotonic() < stopped + OUTAGE:
                    assert server.process is not None and server.process.poll() is None
                    assert await _health(http) == 503
                    assert len(typist.of_type("ack")) == acks_before
                    await asyncio.sleep(0.5)
                assert typist.state.awaiting is not None

                own_database[0] = EmbeddedPostgres(own_database[0].data_dir)
                assert own_database[0].start() == url

                # Every edit is stored and acknowledged; everyone converges.
                await typist.synced(timeout=30)
                deadline = time.monotonic() + 30
                while await _health(http) != 200:
                    assert time.monotonic() < deadline, "/health did not recover"
                    await asyncio.sleep(0.1)
                expected = "yjs before start during"
                await typist.wait_for(lambda: typist.text == expected, timeout=30)
                await watcher.wait_for(lambda: watcher.text == expected, timeout=30)
                await yjs.wait_content(expected, timeout=30)

                response = await http.get(f"/notes/{note_id}")
                assert response.status_code == 200
                assert response.json()["content"] == expected
                await db.wait_row(note_id, lambda row: row.content == expected, timeout=30,
                                  message="the note saved after the outage")
                # A REST write works again.
                response = await http.post("/notes", json={"title": "after", "content": "ok"})
                assert response.status_code == 201
            await typist.close()
            await watcher.close()
        assert server.process is not None and server.process.poll() is None
        # The logs: one line per failed attempt, no tracebacks, no note text.
        log = server.log()
        assert "Traceback" not in log, log[-3000:]
        assert "writing 2 updates to the log failed" in log
        assert "before start" not in log
    finally:
        await db.close()
        server.stop()
