"""The REST fast path (issue 12): the hot reads on asyncpg (``HotPool``), the note and the
caller's role in one statement, UTF-8 JSON. It must answer exactly what the old path did, and
every credential and share change must count on the very next request."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
from conftest import ServerProcess
from live_helpers import Raw
from sqlalchemy import text
from test_auth import World, sign_up

from notes.app import create_app
from notes.config import Settings
from notes.http.problems import problem_response
from notes.store.database import HotPool, make_engine
from notes.use_cases import etag_of

TEXT = "é 漢 😀"


@pytest.fixture(scope="module")
def world(auth_server: ServerProcess) -> World:
    accounts = [sign_up(auth_server.url, name)
                for name in ("owner", "editor", "viewer", "stranger")]
    return World(auth_server.url, *accounts)


def get(world: World, note_id: str, who, **headers) -> httpx.Response:
    return httpx.get(f"{world.url}/notes/{note_id}", headers={**who.bearer(), **headers})


def assert_utf8_json(response: httpx.Response) -> dict:
    """The raw body carries the text as UTF-8, without a single ``\\u`` escape."""
    raw = response.content
    assert b"\\u" not in raw, raw[:300]
    for char in ("é", "漢", "😀"):
        assert char.encode() in raw
    return json.loads(raw.decode("utf-8"))


# --- UTF-8 JSON ----------------------------------------------------------------------------------


def test_json_responses_carry_utf8_text(world: World, auth_server: ServerProcess):
    owner = world.owner
    made = httpx.post(world.url + "/notes", json={"title": f"t {TEXT}", "content": f"c {TEXT}"},
                      headers=owner.bearer())
    assert made.status_code == 201
    body = assert_utf8_json(made)
    assert (body["title"], body["content"]) == (f"t {TEXT}", f"c {TEXT}")
    note_id = body["id"]

    got = get(world, note_id, owner)
    assert got.status_code == 200 and got.headers["content-type"] == "application/json"
    assert assert_utf8_json(got) == body

    page = httpx.get(world.url + "/notes", params={"limit": 200}, headers=owner.bearer())
    items = assert_utf8_json(page)["items"]
    assert [item for item in items if item["id"] == note_id] == [body]

    hits = httpx.get(world.url + "/notes", params={"q": "漢"}, headers=owner.bearer())
    assert note_id in [item["id"] for item in assert_utf8_json(hits)["items"]]

    put = httpx.put(f"{world.url}/notes/{note_id}", json={"title": TEXT, "content": TEXT * 3},
                    headers=owner.bearer())
    assert assert_utf8_json(put)["content"] == TEXT * 3



def test_problems_carry_utf8_text(database_url: str):
    """Problems go through the app's encoder too (``problem_response`` is Sanic's ``json``)."""
    create_app(Settings(database_url=database_url), name=f"utf8-{uuid.uuid4().hex[:8]}")
    response = problem_response(404, f"No user named {TEXT!r}.", kind="no-such-user",
                                errors=[{"loc": ["username"], "msg": TEXT, "type": "x"}])
    assert response.content_type == "application/problem+json"
    raw = bytes(response.body)
    assert b"\\u" not in raw and TEXT.encode() in raw
    assert json.loads(raw)["errors"][0]["msg"] == TEXT


def test_a_lone_surrogate_is_still_answered_as_json(http: httpx.Client, make_note):
    """orjson refuses lone surrogates; the fallback escapes them (the only escapes left)."""
    note = make_note("surrogate", "text")
    response = http.patch(f"/notes/{note['id']}", content=b'{"title": "\\ud800"}',
                          headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["status"] == 422


# --- the same answers ----------------------------------------------------------------------------


def test_get_answers_the_stored_note_its_etag_and_304(world: World, sql):
    note_id = world.note(f"content {TEXT}")
    got = get(world, note_id, world.viewer)
    assert got.status_code == 200
    body = got.json()
    (row,) = sql("SELECT id, title, content, rev, version, created_at, updated_at FROM notes"
                 " WHERE id = :id", id=uuid.UUID(note_id))
    assert body == {
        "id": note_id, "title": row.title, "content": row.content, "rev": row.rev,
        "epoch": None, "version": row.version,
        "created_at": row.created_at.isoformat().replace("+00:00", "Z"),
        "updated_at": row.updated_at.isoformat().replace("+00:00", "Z"),
        "owner": world.owner.username, "role": "viewer",
    }
    etag = got.headers["etag"]
    assert etag == etag_of(row.title, row.content, "viewer")
    assert got.headers["cache-control"] == "private, no-cache"
    assert got.headers["vary"] == "Authorization, Cookie, Accept"

    owner_etag = get(world, note_id, world.owner).headers["etag"]
    assert owner_etag == etag_of(row.title, row.content, "owner") != etag

    not_modified = get(world, note_id, world.viewer, **{"If-None-Match": f'"x", W/{etag}'})
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert not_modified.headers["etag"] == etag
    # The viewer's ETag is not the owner's: the owner gets the note again.
    assert get(world, note_id, world.owner, **{"If-None-Match": etag}).status_code == 200

    markdown = get(world, note_id, world.viewer, Accept="text/markdown")
    assert markdown.status_code == 200 and markdown.text == f"content {TEXT}"
    assert markdown.headers["etag"] != etag


def test_a_note_the_caller_may_not_see_is_the_404_of_a_missing_one(world: World):
    note_id = world.note()
    hidden = get(world, note_id, world.stranger)
    missing = get(world, str(uuid.uuid4()), world.stranger)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.headers["content-type"] == "application/problem+json"
    assert hidden.json() == missing.json() == {
        "type": "https://notes.invalid/problems/not-found", "title": "Not Found",
        "status": 404, "detail": "No note with this id."}


def test_a_deleted_token_is_refused_on_the_next_request(world: World):
    note_id = world.note()
    made = world.owner.client.post("/auth/tokens", json={"name": "short-lived"}).json()
    bearer = {"Authorization": f"Bearer {made['token']}"}
    assert httpx.get(f"{world.url}/notes/{note_id}", headers=bearer).status_code == 200
    assert world.owner.client.delete(f"/auth/tokens/{made['id']}").status_code == 204
    refused = httpx.get(f"{world.url}/notes/{note_id}", headers=bearer)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == 'Bearer realm="notes", error="invalid_token"'
    assert refused.headers["content-type"] == "application/problem+json"


def test_a_signed_out_session_is_refused_on_the_next_request(world: World):
    note_id = world.note()
    account = sign_up(world.url, "leaving")
    share = httpx.put(f"{world.url}/notes/{note_id}/shares/{account.username}",
                      json={"role": "viewer"}, headers=world.owner.bearer())
    assert share.status_code == 201
    cookie = {"cookie": f"notes_session={account.client.cookies['notes_session']}"}
    assert httpx.get(f"{world.url}/notes/{note_id}", headers=cookie).status_code == 200
    assert account.client.post("/auth/logout").status_code == 204
    assert httpx.get(f"{world.url}/notes/{note_id}", headers=cookie).status_code == 401


def test_share_changes_count_on_the_next_request(world: World):
    note_id = world.note()
    share_url = f"{world.url}/notes/{note_id}/shares/{world.viewer.username}"
    first = get(world, note_id, world.viewer)
    assert first.json()["role"] == "viewer"
    promoted = httpx.put(share_url, json={"role": "editor"}, headers=world.owner.bearer())
    assert promoted.status_code == 200
    second = get(world, note_id, world.viewer, **{"If-None-Match": first.headers["etag"]})
    assert second.status_code == 200 and second.json()["role"] == "editor"
    assert httpx.delete(share_url, headers=world.owner.bearer()).status_code == 204
    assert get(world, note_id, world.viewer).status_code == 404
    assert get(world, note_id, world.editor).status_code == 200  # (still shared)


def test_a_trashed_note_is_not_found_and_comes_back_when_restored(world: World):
    note_id = world.note()
    assert httpx.delete(f"{world.url}/notes/{note_id}",
                        headers=world.owner.bearer()).status_code == 204
    for who in (world.owner, world.editor, world.viewer):
        assert get(world, note_id, who).status_code == 404
    restored = httpx.post(f"{world.url}/trash/{note_id}/restore", headers=world.owner.bearer())
    assert restored.status_code == 200
    assert get(world, note_id, world.viewer).json()["role"] == "viewer"


def test_a_share_link_reads_its_note_only(world: World):
    note_id, other_id = world.note("linked"), world.note("other")
    link = httpx.post(f"{world.url}/notes/{note_id}/links", json={"role": "viewer"},
                      headers=world.owner.bearer()).json()
    bearer = {"Authorization": f"Bearer {link['token']}"}
    got = httpx.get(f"{world.url}/notes/{note_id}", headers=bearer)
    assert got.status_code == 200
    assert (got.json()["content"], got.json()["role"]) == ("linked", "viewer")
    assert httpx.get(f"{world.url}/notes/{other_id}", headers=bearer).status_code == 404
    revoked = httpx.delete(f"{world.url}/notes/{note_id}/links/{link['id']}",
                           headers=world.owner.bearer())
    assert revoked.status_code == 204
    assert httpx.get(f"{world.url}/notes/{note_id}", headers=bearer).status_code == 401


async def test_get_of_an_open_note_answers_the_live_text(world: World):
    note_id = world.note("abc")
    raw = await Raw.open(world.url, note_id, token=world.editor.token)
    try:
        await raw.send({"type": "edit", "rev": raw.hello["rev"],
                        "delta": [{"retain": 3}, {"insert": f" {TEXT}"}]})
        ack = await raw.next("ack")
        async with httpx.AsyncClient() as client:
            got = await client.get(f"{world.url}/notes/{note_id}",
                                   headers=world.viewer.bearer())
        body = got.json()
        assert body["content"] == f"abc {TEXT}"
        assert body["epoch"] == raw.hello["epoch"] and body["rev"] == ack["rev"]
        assert body["role"] == "viewer"
    finally:
        await raw.close()


# --- the pool of hot connections -----------------------------------------------------------------


def test_killed_hot_connections_are_replaced(world: World, sql):
    """PostgreSQL ends every hot connection (a restart, an administrator): the next request
    still answers, on a new connection."""
    note_id = world.note()
    assert get(world, note_id, world.viewer).status_code == 200
    killed = sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                 " WHERE application_name = 'notes-hot'")
    assert killed and all(row[0] for row in killed)
    for _ in range(3):
        assert get(world, note_id, world.viewer).status_code == 200


async def backends(engine, name: str, state: str | None = None) -> int:
    query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"
    if state is not None:
        query += " AND state = :state"
    async with engine.connect() as connection:
        return (await connection.execute(text(query), {"name": name, "state": state})
                ).scalar_one()


async def backends_become(engine, name: str, state: str, count: int, timeout: float = 10.0
                          ) -> None:
    """Poll PostgreSQL until ``count`` of the pool's backends are in ``state``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while await backends(engine, name, state) != count:
        assert asyncio.get_running_loop().time() < deadline, f"{count} {state} backends"
        await asyncio.sleep(0.01)


async def test_hot_pool_bounds_its_connections_and_survives_cancelled_statements(database_url):
    name = f"hot-test-{uuid.uuid4().hex[:8]}"
    pool = await HotPool(database_url, size=2, name=name).open()
    engine = make_engine(database_url, pool_size=1)
    try:
        rows = await asyncio.gather(*(pool.fetchrow("SELECT $1::int AS n, pg_sleep(0.01)", n)
                                      for n in range(12)))
        assert [row["n"] for row in rows] == list(range(12))
        assert await backends(engine, name) == 2

        # A statement interrupted by a cancelled request: PostgreSQL cancels it too, and its
        # connection serves the next statement.
        slow = asyncio.ensure_future(pool.fetchrow("SELECT pg_sleep(30)"))
        await backends_become(engine, name, "active", 1)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        assert (await pool.fetchrow("SELECT 7 AS n"))["n"] == 7
        await backends_become(engine, name, "active", 0)  # (not 30 s later)
        assert await backends(engine, name) == 2

        # A statement that fails leaves its connection usable.
        with pytest.raises(Exception, match="division by zero"):
            await pool.fetchrow("SELECT 1 / 0")
        assert (await pool.fetchrow("SELECT 8 AS n"))["n"] == 8
        assert await backends(engine, name) <= 2

        # Its statements run on generic plans (planned once per connection).
        rows = await asyncio.gather(*(pool.fetchrow("SHOW plan_cache_mode") for _ in range(4)))
        assert {row[0] for row in rows} == {"force_generic_plan"}
    finally:
        await pool.close()
        await engine.dispose()


# --- the credential and the note in one statement --------------------------------------------


def test_a_wrong_secret_is_refused_before_the_note_is_looked_at(world: World):
    """GET reads the credential and the note in one statement; a token with a real id but the
    wrong secret is still a 401, for a note that exists and for one that does not."""
    note_id = world.note()
    token = world.owner.bearer()["Authorization"].removeprefix("Bearer ")
    forged = {"Authorization": f"Bearer {token[:-4]}{'AAAA' if token[-4:] != 'AAAA' else 'BBBB'}"}
    for target in (note_id, str(uuid.uuid4())):
        refused = httpx.get(f"{world.url}/notes/{target}", headers=forged)
        assert refused.status_code == 401, refused.text
        assert refused.headers["www-authenticate"].endswith('error="invalid_token"')
        assert refused.json()["status"] == 401 and "content" not in refused.json()
    assert get(world, note_id, world.owner).status_code == 200


def test_an_expired_session_is_refused_on_the_get_of_a_note(world: World, sql):
    note_id = world.note()
    account = sign_up(world.url, "expiring")
    assert httpx.put(f"{world.url}/notes/{note_id}/shares/{account.username}",
                     json={"role": "editor"}, headers=world.owner.bearer()).status_code == 201
    cookie = {"cookie": f"notes_session={account.client.cookies['notes_session']}"}
    read = httpx.get(f"{world.url}/notes/{note_id}", headers=cookie)
    assert read.status_code == 200 and read.json()["role"] == "editor"
    sql("UPDATE sessions SET expires_at = now() - interval '1 second'"
        " WHERE user_id = (SELECT id FROM users WHERE username = :name)", name=account.username)
    assert httpx.get(f"{world.url}/notes/{note_id}", headers=cookie).status_code == 401


@pytest.mark.parametrize("microsecond", [0, 123456])
@pytest.mark.parametrize("role", [None, "owner", "viewer"])
def test_the_json_of_a_note_is_what_its_schema_dumps(microsecond: int, role: str | None):
    from datetime import UTC, datetime, timedelta, timezone

    from notes.http.encoding import dumps
    from notes.http.notes import note_json
    from notes.http.schemas import NoteOut
    from notes.store.queries import StoredNote

    made = datetime(2026, 12, 7, 23, 40, 9, microsecond, tzinfo=UTC)
    for note in (StoredNote(uuid.uuid4(), TEXT, TEXT * 3, 7, 3, made, made, None, role=role),
                 StoredNote(uuid.uuid4(), "t", "", 0, 1, made,
                            made.astimezone(timezone(timedelta(hours=2))), "owner",
                            epoch="e1", role=role)):
        schema = NoteOut.model_validate(note, from_attributes=True).model_dump(mode="json")
        assert json.loads(dumps(note_json(note))) == schema
        # (and where orjson refuses the text, the standard library's fallback writes the same)
        fallback = {**note_json(note), "title": "\ud800"}
        assert json.loads(dumps(fallback)) == {**schema, "title": "\ud800"}
