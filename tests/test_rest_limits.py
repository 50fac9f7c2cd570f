"""Per-client quotas: the REST write rate (429, ``Retry-After``) and sockets per note, user and
address (close 1013), pure and against real servers with low limits. Other addresses are real:
the clients bind to 127.0.0.2 and 127.0.0.3 (loopback) besides 127.0.0.1."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from conftest import ServerProcess
from live_helpers import Raw
from websockets.exceptions import ConnectionClosed
from yjs_py import RawYjs

from notes.collab.quotas import CLOSE_TRY_LATER, RequestRate, SocketQuota, TooManySockets
from notes.config import Settings

PASSWORD = "correct horse battery"
RATE, BURST = 0.5, 4  # the REST servers' NOTES_REST_WRITE_RATE and NOTES_REST_WRITE_BURST


# --- pure -----------------------------------------------------------------------------------------


def test_a_key_gets_its_burst_then_the_seconds_to_wait_and_other_keys_are_untouched():
    rate = RequestRate(rate=0.5, burst=3)
    assert [rate.take("a", 0.0) for _ in range(4)] == [0, 0, 0, 2]  # 1 token: 2 s at 0.5/s
    assert rate.take("a", 1.0) == 1  # half a token by now
    assert rate.take("b", 1.0) == 0
    assert rate.take("a", 2.0) == 0 and rate.take("a", 2.0) == 2


def test_idle_buckets_are_forgotten_and_their_number_is_capped():
    rate = RequestRate(rate=10, burst=5)  # full again 0.5 s after its last request
    for key in range(100):
        rate.take(key, 0.0)
    assert len(rate) == 100
    rate.take("late", 0.6)
    assert len(rate) == 1  # every other one was full again: the same as a new one
    capped = RequestRate(rate=1, burst=5, max_keys=10)
    for key in range(50):
        capped.take(key, 0.0)
    assert len(capped) == 10


def test_the_socket_quota_counts_what_is_open_per_kind_and_a_freed_slot_is_reused():
    quota = SocketQuota(per_note=2, per_user=3, per_address=0)  # 0: no limit of that kind
    first = quota.claim("n1", "u", "a")
    quota.claim("n1", None, "a")
    with pytest.raises(TooManySockets, match="on this note"):
        quota.claim("n1", "u", "b")
    assert quota.count("note", "n1") == 2 and quota.count("user", "u") == 1  # nothing counted
    quota.claim("n2", "u", "a")
    quota.claim("n3", "u", "a")
    with pytest.raises(TooManySockets, match="of this user"):
        quota.claim("n4", "u", "a")
    quota.release(first)
    assert quota.count("user", "u") == 2 and quota.count("note", "n1") == 1
    quota.claim("n1", "u", "a")
    assert quota.count("address", "a") == 0  # not counted at all
    limited = SocketQuota(per_note=0, per_user=0, per_address=1)
    limited.release(limited.claim("n", None, "a"))
    assert limited.count("address", "a") == 0 and not limited._open  # (dropped at 0)
    limited.claim("n", None, "a")
    with pytest.raises(TooManySockets, match="from this address"):
        limited.claim("m", None, "a")


def test_the_settings_and_their_defaults():
    defaults = Settings()
    assert (defaults.rest_write_rate, defaults.rest_write_burst) == (20.0, 100)
    assert (defaults.ws_per_note, defaults.ws_per_user, defaults.ws_per_address) == (500, 100, 200)
    with pytest.raises(ValueError, match="NOTES_REST_WRITE_BURST"):
        Settings.from_env({"NOTES_REST_WRITE_BURST": "0"})
    with pytest.raises(ValueError, match="NOTES_WS_PER_NOTE"):
        Settings.from_env({"NOTES_WS_PER_NOTE": "-1"})


# --- REST -----------------------------------------------------------------------------------------


def client(url: str, address: str = "127.0.0.1", **kwargs) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=30,
                        transport=httpx.HTTPTransport(local_address=address), **kwargs)


def exhaust(send, limit: int = BURST + 3) -> httpx.Response:
    """Send writes until one is refused (429); that answer."""
    for _ in range(limit):
        response = send()
        if response.status_code == 429:
            return response
        assert response.status_code < 300, response.text
    raise AssertionError(f"no 429 in {limit} writes")


def assert_throttled(response: httpx.Response) -> int:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 429
    wait = int(response.headers["retry-after"])
    assert 1 <= wait <= 1 / RATE
    return wait


@pytest.fixture(scope="module")
def open_server(database_url: str) -> Iterator[ServerProcess]:
    """Accounts off: writes are counted per address; 3 sockets a note, 4 an address."""
    process = ServerProcess(database_url, log_name="rest-limits-open", env={
        "NOTES_REST_WRITE_RATE": str(RATE), "NOTES_REST_WRITE_BURST": str(BURST),
        "NOTES_WS_PER_NOTE": "3", "NOTES_WS_PER_ADDRESS": "4"}).start()
    yield process
    process.stop()


def test_writes_past_the_burst_get_429_per_address_and_change_nothing(open_server, sql):
    title = f"limited-{uuid.uuid4().hex[:8]}"
    with client(open_server.url) as http, client(open_server.url, "127.0.0.2") as other:
        note = http.post("/notes", json={"title": title, "content": "before"}).json()
        refused = exhaust(lambda: http.post("/notes", json={"title": title, "content": "more"}))
        wait = assert_throttled(refused)
        made = sql("select count(*) from notes where title = :title", title=title)[0][0]
        put = http.put(f"/notes/{note['id']}", json={"title": title, "content": "after"})
        assert_throttled(put)
        assert http.get(f"/notes/{note['id']}").json()["content"] == "before"
        assert sql("select count(*) from notes where title = :title",
                   title=title)[0][0] == made  # (the refused POSTs made nothing)
        for _ in range(BURST * 3):  # reads cost nothing
            assert http.get(f"/notes/{note['id']}").status_code == 200
        assert http.get("/health").status_code == 200
        # Another address has a bucket of its own.
        assert other.put(f"/notes/{note['id']}",
                         json={"title": title, "content": "other"}).status_code == 200
        time.sleep(wait)  # what Retry-After promised
        assert http.put(f"/notes/{note['id']}",
                        json={"title": title, "content": "later"}).status_code == 200


@pytest.fixture(scope="module")
def auth_limited(database_url: str) -> Iterator[ServerProcess]:
    """Accounts on: writes are counted per user; at most 2 sockets a user; behind one proxy
    (Sanic's own setting: the address is X-Forwarded-For's when there is one)."""
    process = ServerProcess(database_url, log_name="rest-limits-auth", env={
        "NOTES_AUTH": "on", "SANIC_PROXIES_COUNT": "1", "NOTES_REST_WRITE_RATE": str(RATE),
        "NOTES_REST_WRITE_BURST": str(BURST), "NOTES_WS_PER_USER": "2"}).start()
    yield process
    process.stop()


def sign_up(url: str, address: str) -> tuple[httpx.Client, str]:
    """A new account, signed up from ``address`` (sign-ups count per address); a client with
    its token, and the token."""
    with client(url, address) as anonymous:
        response = anonymous.post("/auth/signup", json={
            "username": f"lim-{uuid.uuid4().hex[:10]}", "password": PASSWORD})
        assert response.status_code == 201, response.text
        token = anonymous.post("/auth/tokens", json={"name": "t"})
        assert token.status_code == 201, token.text
    secret = token.json()["token"]
    return client(url, headers={"Authorization": f"Bearer {secret}"}), secret


def test_signed_in_writes_are_counted_per_user_not_per_address(auth_limited):
    ada, _ = sign_up(auth_limited.url, "127.0.0.2")
    bob, _ = sign_up(auth_limited.url, "127.0.0.3")
    with ada, bob:  # (both from 127.0.0.1 now)
        note = ada.post("/notes", json={"title": "ada", "content": "x"}).json()
        refused = exhaust(lambda: ada.patch(f"/notes/{note['id']}", json={"content": "y"}))
        assert_throttled(refused)
        assert ada.get(f"/notes/{note['id']}").status_code == 200
        assert bob.post("/notes", json={"title": "bob", "content": "x"}).status_code == 201


def test_behind_a_proxy_the_forwarded_address_counts(auth_limited):
    def sign_out(address: str) -> httpx.Response:  # (a write that needs no account)
        return httpx.post(auth_limited.url + "/auth/logout",
                          headers={"X-Forwarded-For": address})

    assert_throttled(exhaust(lambda: sign_out("203.0.113.7")))
    assert sign_out("203.0.113.8").status_code == 204


def test_the_openapi_document_lists_429_for_writes_only(auth_limited):
    document = httpx.get(auth_limited.url + "/docs/openapi.json").json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if method in ("post", "put", "patch", "delete"):
                assert "429" in operation["responses"], (method, path)
            elif method == "get":
                assert "429" not in operation["responses"], (method, path)


# --- sockets --------------------------------------------------------------------------------------


def new_note(url: str) -> str:
    """(From an address of its own: the REST test spends 127.0.0.1's writes.)"""
    with client(url, "127.0.0.5") as http:
        response = http.post("/notes", json={"title": "quota", "content": "abc"})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def local(address: str) -> dict:
    return {"local_addr": (address, 0)}


async def refused(url: str, note_id: str, reason: str, address: str = "127.0.0.1") -> None:
    raw = await Raw.open(url, note_id, expect_hello=False, **local(address))
    code, seen = await raw.closed()
    assert (code, seen) == (CLOSE_TRY_LATER, [])  # closed before anything was sent
    assert raw.ws.close_reason == reason


async def test_sockets_past_the_note_and_address_quota_are_closed_with_1013(open_server):
    url = open_server.url
    busy, other, third = new_note(url), new_note(url), new_note(url)
    members = [await Raw.open(url, busy, name=f"m{i}") for i in range(3)]
    await refused(url, busy, "too many sockets on this note")
    await refused(url, busy, "too many sockets on this note", "127.0.0.2")  # any address
    yjs = await RawYjs.open(open_server.ws_url, busy)  # both protocols count
    with pytest.raises(ConnectionClosed):
        await yjs.recv()
    assert yjs.ws.close_code == CLOSE_TRY_LATER
    # The members carry on.
    await members[0].send({"type": "edit", "rev": members[0].hello["rev"],
                           "delta": [{"insert": "!"}]})
    assert (await members[0].next("ack"))["rev"] == members[0].hello["rev"] + 1
    assert (await members[1].next("edit"))["delta"] == [{"insert": "!"}]
    # A fourth socket from 127.0.0.1 on another note fills the address's quota of 4.
    fourth = await Raw.open(url, other)
    await refused(url, third, "too many sockets from this address")
    elsewhere = await Raw.open(url, third, **local("127.0.0.2"))
    # A freed slot is taken again (once the server has let go of the closed socket).
    await members[2].close()
    reopened = None
    deadline = time.monotonic() + 10
    while reopened is None:
        raw = await Raw.open(url, busy, expect_hello=False)
        try:
            reopened = raw.hello = await raw.recv(timeout=2)
        except ConnectionClosed:
            assert time.monotonic() < deadline, "the freed slot was never given back"
            assert raw.ws.close_code == CLOSE_TRY_LATER
    assert reopened["type"] == "hello" and reopened["content"] == "!abc"
    for socket in [*members[:2], fourth, elsewhere, raw]:
        await socket.close()


async def test_a_user_past_their_socket_quota_is_closed_and_others_are_not(auth_limited):
    ada, ada_token = sign_up(auth_limited.url, "127.0.0.2")
    bob, bob_token = sign_up(auth_limited.url, "127.0.0.3")
    with ada, bob:
        ada_note = ada.post("/notes", json={"title": "a", "content": ""}).json()["id"]
        bob_note = bob.post("/notes", json={"title": "b", "content": ""}).json()["id"]
    sockets = [await Raw.open(auth_limited.url, ada_note, token=ada_token) for _ in range(2)]
    raw = await Raw.open(auth_limited.url, ada_note, token=ada_token, expect_hello=False)
    assert await raw.closed() == (CLOSE_TRY_LATER, [])
    assert raw.ws.close_reason == "too many sockets of this user"
    sockets.append(await Raw.open(auth_limited.url, bob_note, token=bob_token))
    for socket in sockets:
        await socket.close()
