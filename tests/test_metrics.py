"""GET /metrics: off without NOTES_METRICS_TOKEN, its own token, and numbers that move (a real
server, a real live client of each protocol)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from conftest import ServerProcess, wait_until
from prometheus_client.parser import text_string_to_metric_families
from yjs_py import PyYjsClient

from notes.client import LiveClient

TOKEN = "metrics-" + uuid.uuid4().hex
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOTE_ROUTE = "/notes/<note_id:uuid>"


@pytest.fixture(scope="module")
def metrics_server(database_url: str) -> Iterator[ServerProcess]:
    process = ServerProcess(database_url, env={"NOTES_METRICS_TOKEN": TOKEN},
                            log_name="metrics-server").start()
    yield process
    process.stop()


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a scrape: (name, its labels) -> value."""
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    response = httpx.get(url + "/metrics", headers=AUTH, timeout=10)
    assert response.status_code == 200, response.text
    return samples(response.text)


async def eventually(client: httpx.AsyncClient, predicate, message: str,
                     timeout: float = 10.0) -> dict[tuple[str, frozenset], float]:
    """Scrape until ``predicate(scraped)`` holds."""
    deadline = time.monotonic() + timeout
    while True:
        scraped = await ascrape(client)
        if predicate(scraped):
            return scraped
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {message}"
        await asyncio.sleep(0.05)


async def ascrape(client: httpx.AsyncClient) -> dict[tuple[str, frozenset], float]:
    response = await client.get("/metrics", headers=AUTH)
    assert response.status_code == 200, response.text
    return samples(response.text)


def value(scraped: dict, name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


def test_metrics_are_off_without_a_token(http: httpx.Client) -> None:
    response = http.get("/metrics", headers=AUTH)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": "Bearer"},
])
def test_metrics_need_their_token(metrics_server: ServerProcess, headers: dict) -> None:
    response = httpx.get(metrics_server.url + "/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["status"] == 401


def test_an_account_token_is_not_the_metrics_token(metrics_server: ServerProcess) -> None:
    """(accounts are off here: a metrics scrape still needs its token)"""
    response = httpx.get(metrics_server.url + "/metrics",
                         headers={"Authorization": "Bearer notes_x_y"})
    assert response.status_code == 401


def test_requests_are_counted_by_route_not_path(metrics_server: ServerProcess) -> None:
    url = metrics_server.url
    created = httpx.post(url + "/notes", json={"title": "counted", "content": "x"})
    assert created.status_code == 201
    note_id = created.json()["id"]
    response = httpx.get(url + "/metrics", headers=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "version=" in response.headers["content-type"]
    before = samples(response.text)

    for _ in range(5):
        assert httpx.get(f"{url}/notes/{note_id}").status_code == 200
    for _ in range(2):
        assert httpx.get(f"{url}/notes/{uuid.uuid4()}").status_code == 404
    assert httpx.get(f"{url}/no/such/thing").status_code == 404
    after = scrape(url)

    def rise(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    ok = {"route": NOTE_ROUTE, "method": "GET", "status": "200"}
    assert rise("notes_http_requests_total", **ok) == 5
    assert rise("notes_http_requests_total", **{**ok, "status": "404"}) == 2
    assert rise("notes_http_requests_total", route="(unmatched)", method="GET",
                status="404") == 1
    assert rise("notes_http_request_duration_seconds_count", route=NOTE_ROUTE,
                method="GET") == 7
    assert rise("notes_http_request_duration_seconds_sum", route=NOTE_ROUTE,
                method="GET") > 0
    infinite = value(after, "notes_http_request_duration_seconds_bucket", route=NOTE_ROUTE,
                     method="GET", le="+Inf")
    assert infinite == value(after, "notes_http_request_duration_seconds_count",
                             route=NOTE_ROUTE, method="GET")
    assert not any(note_id in str(labels) for _, labels in after)  # no raw paths
    assert value(after, "process_resident_memory_bytes") > 0


async def test_live_metrics_move(metrics_server: ServerProcess) -> None:
    url = metrics_server.url
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        created = await client.post("/notes", json={"title": "live", "content": ""})
        note_id = created.json()["id"]
        before = await ascrape(client)
        json_client = await LiveClient.connect(url, note_id, name="json")
        try:
            opened = await ascrape(client)
            assert value(opened, "notes_open_notes") >= 1
            assert (value(opened, "notes_sockets", protocol="json")
                    == value(before, "notes_sockets", protocol="json") + 1)

            await json_client.insert(0, "hello")
            await json_client.synced()
            edited = await ascrape(client)
            assert (value(edited, "notes_edits_applied_total", source="json")
                    == value(before, "notes_edits_applied_total", source="json") + 1)

            async with PyYjsClient(metrics_server.ws_url, note_id) as yjs_client:
                with_yjs = await ascrape(client)
                assert (value(with_yjs, "notes_sockets", protocol="yjs")
                        == value(before, "notes_sockets", protocol="yjs") + 1)
                yjs_client.content.insert(5, " world")  # (sent by the provider)
                await json_client.wait_for(lambda: json_client.text == "hello world")
                yjs_edited = await ascrape(client)
                assert (value(yjs_edited, "notes_edits_applied_total", source="yjs")
                        == value(before, "notes_edits_applied_total", source="yjs") + 1)
                # the JSON client heard of the Yjs edit: at least that frame went out
                assert (value(yjs_edited, "notes_frames_sent_total")
                        > value(edited, "notes_frames_sent_total"))

            patched = await client.patch(f"/notes/{note_id}", json={"content": "rest"})
            assert patched.status_code == 200
            await json_client.wait_for(lambda: json_client.text == "rest")
            rested = await ascrape(client)
            assert (value(rested, "notes_edits_applied_total", source="rest")
                    == value(before, "notes_edits_applied_total", source="rest") + 1)
            assert value(rested, "notes_log_commits_total") > value(before,
                                                                    "notes_log_commits_total")
            # each stored change is published to the other processes (none here to receive)
            assert (value(rested, "notes_process_messages_total", direction="sent")
                    >= value(before, "notes_process_messages_total", direction="sent") + 3)
            # PATCH answers after a save; saves are timed
            assert value(rested, "notes_saves_total") > value(before, "notes_saves_total")
            assert (value(rested, "notes_save_seconds_total")
                    > value(before, "notes_save_seconds_total"))
            assert value(rested, "notes_save_failures_total") == 0
        finally:
            await json_client.close()

        await eventually(client, lambda now: value(now, "notes_sockets", protocol="json")
                         == value(before, "notes_sockets", protocol="json"),
                         "the closed socket to be let go")


def test_health_stays_public_beside_metrics(metrics_server: ServerProcess) -> None:
    assert httpx.get(metrics_server.url + "/health").status_code == 200


def test_metrics_token_works_with_accounts_on(database_url: str) -> None:
    """The accounts check lets /metrics through to its own token check (no account needed,
    an account's credentials not enough)."""
    process = ServerProcess(database_url, env={"NOTES_METRICS_TOKEN": TOKEN, "NOTES_AUTH": "on"},
                            log_name="metrics-auth-server").start()
    try:
        scraped = scrape(process.url)
        assert ("notes_open_notes", frozenset()) in scraped
        assert httpx.get(process.url + "/metrics").status_code == 401
        assert httpx.get(process.url + "/notes", headers=AUTH).status_code == 401  # not a key
        # Refused credentials: counted by status for REST, by close code for sockets.
        before = scrape(process.url)
        assert httpx.get(process.url + "/notes").status_code == 401
        note = f"{process.ws_url}/notes/{uuid.uuid4()}/live"
        asyncio.run(_refused_socket(note))
        after = scrape(process.url)
        assert (value(after, "notes_http_requests_total", route="/notes", method="GET",
                      status="401")
                == 1 + value(before, "notes_http_requests_total", route="/notes", method="GET",
                        status="401"))
        assert (value(after, "notes_socket_closes_total", code="4401")
                == value(before, "notes_socket_closes_total", code="4401") + 1)
    finally:
        process.stop()


async def _refused_socket(url: str) -> None:
    """A socket without credentials: closed with 4401 (counted once it has ended)."""
    from websockets.asyncio.client import connect
    async with connect(url) as ws:
        await ws.wait_closed()
        assert ws.close_code == 4401


def test_workers_are_added_up(database_url: str) -> None:
    """--workers 2: whichever worker answers a scrape, the HTTP counters are both workers' (the
    requests land on either), and so are the core's (copied every second)."""
    process = ServerProcess(database_url, env={"NOTES_METRICS_TOKEN": TOKEN},
                            log_name="metrics-workers", args=["--workers", "2"]).start()
    try:
        url = process.url
        note_id = httpx.post(url + "/notes", json={"title": "w", "content": ""}).json()["id"]
        before = scrape(url)
        assert ("process_resident_memory_bytes", frozenset()) not in before  # (per process)
        count = 20
        for index in range(count):  # a new connection each: spread over the workers
            assert httpx.patch(f"{url}/notes/{note_id}",
                               json={"content": f"v{index}"}).status_code == 200
        pids: list[int] = []

        def seen_both_workers() -> bool:  # (a new connection each time)
            pids.append(httpx.get(url + "/health").json()["process"]["pid"])
            return len(set(pids)) == 2

        wait_until(seen_both_workers, timeout=10, message="requests answered by both workers")
        health = {"route": "/health", "method": "GET", "status": "200"}
        patched = {"route": NOTE_ROUTE, "method": "PATCH", "status": "200"}
        for _ in range(4):  # whichever worker answers the scrape
            scraped = scrape(url)
            assert (value(scraped, "notes_http_requests_total", **health)
                    == value(before, "notes_http_requests_total", **health) + len(pids))
            assert (value(scraped, "notes_http_requests_total", **patched)
                    == value(before, "notes_http_requests_total", **patched) + count)

        def rest_edits_counted() -> bool:
            scraped = scrape(url)
            return (value(scraped, "notes_edits_applied_total", source="rest")
                    == value(before, "notes_edits_applied_total", source="rest") + count)

        wait_until(rest_edits_counted, timeout=10, message="both workers' edits in a scrape")
    finally:
        assert process.stop() == 0
    assert "Traceback" not in process.log()
