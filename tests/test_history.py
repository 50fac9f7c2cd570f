"""Version history, restore and the trash, on real servers and a real PostgreSQL.

Versions are counted, never timed: each test waits for the saves it causes (the session server
saves 0.3 s after typing stops).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from conftest import ServerProcess, wait_for, wait_until
from live_helpers import RecordingClient
from test_auth import World, sign_up
from yjs_node import yjs_clients

from notes.client import LiveClient, LiveClosed
from notes.collab.delta import apply_delta
from notes.collab.versions import THINNING, Tier, VersionAge, versions_to_drop

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


# --- the thinning policy, on synthetic timestamps ----------------------------------------------


def ages(*spans: tuple[timedelta, timedelta, timedelta]) -> list[VersionAge]:
    """Versions every ``step`` from ``start`` ago to ``end`` ago (newest first)."""
    versions, number = [], 0
    for start, end, step in spans:
        age = start
        while age <= end:
            number += 1
            versions.append(VersionAge(number, NOW - age))
            age += step
    return versions


def kept(versions: list[VersionAge], now: datetime = NOW) -> list[VersionAge]:
    drop = versions_to_drop(versions, now)
    return [version for version in versions if version.id not in drop]


def test_every_version_of_the_last_hour_is_kept():
    versions = ages((timedelta(0), timedelta(minutes=59), timedelta(seconds=10)))
    assert kept(versions) == versions


def test_older_versions_keep_one_per_period_of_their_tier():
    hour, day = timedelta(hours=1), timedelta(days=1)
    versions = ages(
        (timedelta(0), timedelta(minutes=59, seconds=50), timedelta(seconds=10)),  # 360
        (hour, day - timedelta(minutes=1), timedelta(minutes=1)),  # a day of one per minute
        (day, 30 * day - hour, timedelta(minutes=10)),  # a month of one per 10 min
        (30 * day, 400 * day, hour),  # a year of one per hour
    )
    left = kept(versions)

    def count(low: timedelta, high: timedelta) -> int:
        return sum(1 for version in left if low <= NOW - version.created_at < high)

    assert count(timedelta(0), hour) == 360  # all
    assert 138 <= count(hour, day) <= 139  # one per 10 minutes (23 h)
    assert 695 <= count(day, 30 * day) <= 697  # one per hour (29 days)
    assert 370 <= count(30 * day, 401 * day) <= 372  # one per day
    # Each kept version is the newest of its period: the text as the period left it.
    for low, high, period in ((hour, day, 600), (day, 30 * day, 3600), (30 * day, 401 * day,
                                                                        86400)):
        periods: dict[int, list[VersionAge]] = {}
        for version in versions:
            if low <= NOW - version.created_at < high:
                periods.setdefault(int(version.created_at.timestamp() // period), []).append(
                    version)
        for members in periods.values():
            newest = max(members, key=lambda version: version.created_at)
            assert [m for m in members if m in left] == [newest]


def test_named_versions_and_the_newest_are_kept_forever():
    old = NOW - timedelta(days=400)
    versions = [VersionAge(1, old), VersionAge(2, old + timedelta(seconds=1), named=True),
                VersionAge(3, old + timedelta(seconds=2)),
                VersionAge(4, old + timedelta(seconds=3))]
    # 4 is the newest (the note's text); 3 the newest of the others in that day; 2 is named.
    assert versions_to_drop(versions, NOW) == {1}
    assert versions_to_drop(versions[:1], NOW) == set()  # the newest, however old


def test_thinning_is_stable_as_time_passes():
    versions = ages((timedelta(0), timedelta(days=3), timedelta(minutes=3)))
    first = kept(versions)
    later = NOW + timedelta(hours=5)
    assert kept(kept(first, later), later) == kept(first, later)
    assert set(v.id for v in kept(first, later)) <= set(v.id for v in first)


def test_a_policy_is_a_list_of_tiers():
    everything = (Tier(None, None),)
    versions = ages((timedelta(0), timedelta(days=5), timedelta(hours=1)))
    assert versions_to_drop(versions, NOW, everything) == set()
    assert THINNING[0].period is None and THINNING[-1].until is None


# --- versions over REST ------------------------------------------------------------------------


def versions_of(http: httpx.Client, note_id: str, **params) -> list[dict]:
    response = http.get(f"/notes/{note_id}/versions", params=params)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def test_create_and_each_changing_save_record_one_version(http: httpx.Client, sql):
    note = http.post("/notes", json={"title": "t", "content": "one"}).json()
    assert [v["length"] for v in versions_of(http, note["id"])] == [3]
    http.put(f"/notes/{note['id']}", json={"title": "t", "content": "one two"})
    http.put(f"/notes/{note['id']}", json={"title": "t", "content": "one two"})  # no change
    http.patch(f"/notes/{note['id']}", json={"title": "t2"})
    items = versions_of(http, note["id"])
    assert [(v["title"], v["length"]) for v in items] == [("t2", 7), ("t", 7), ("t", 3)]
    assert items[0]["id"] > items[1]["id"] > items[2]["id"]
    assert set(items[0]) == {"id", "created_at", "rev", "title", "length", "authors", "label"}
    rows = sql("SELECT count(*) FROM note_versions WHERE note_id = :id", id=note["id"])
    assert rows[0][0] == 3


async def test_live_typing_records_versions_at_saves_with_their_authors(server, ahttp):
    note = (await ahttp.post("/notes", json={"title": "live", "content": ""})).json()
    alice = await LiveClient.connect(server.ws_url, note["id"], "alice")
    bob = await LiveClient.connect(server.ws_url, note["id"], "bob")
    try:
        for _ in range(20):
            await alice.insert(len(alice.text), "a")
            await bob.insert(0, "b")
        await wait_for(lambda: alice.text == bob.text and len(alice.text) == 40)

        async def saved_versions() -> list[dict]:
            items = (await ahttp.get(f"/notes/{note['id']}/versions")).json()["items"]
            return items if items[0]["length"] == 40 else []

        items = []
        deadline = asyncio.get_running_loop().time() + 10
        while not items and asyncio.get_running_loop().time() < deadline:
            items = await saved_versions()
            await asyncio.sleep(0.05)
        assert items, "no version of the typed text was recorded"
        # A few saves (debounced), not one version per keystroke.
        assert 2 <= len(items) <= 12
        authors = set().union(*(set(v["authors"]) for v in items[:-1]))
        assert authors == {"alice", "bob"}
        assert items[-1]["length"] == 0  # the note as created
    finally:
        await alice.close()
        await bob.close()


def test_versions_page_newest_first_and_read_one(http: httpx.Client, make_note):
    note = make_note("paged", "0")
    for n in range(1, 5):
        http.put(f"/notes/{note['id']}", json={"title": "paged", "content": str(n)})
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = http.get(f"/notes/{note['id']}/versions", params=params).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [v["length"] for v in seen] == [1] * 5
    contents = [http.get(f"/notes/{note['id']}/versions/{v['id']}").json()["content"]
                for v in seen]
    assert contents == ["4", "3", "2", "1", "0"]
    assert http.get(f"/notes/{note['id']}/versions", params={"cursor": "nope!"}
                    ).status_code == 400
    other = make_note("other", "x")
    version_id = seen[0]["id"]
    assert http.get(f"/notes/{other['id']}/versions/{version_id}").status_code == 404
    assert http.get(f"/notes/{note['id']}/versions/{2**63}").status_code == 404
    assert http.get(f"/notes/{uuid.uuid4()}/versions").status_code == 404


@pytest.mark.parametrize("old, new", [
    ("café 漢字 😀 end\nline two\n", "cafés 漢 😀😀 end\nline 2\nline three"),
    ("", "é"),
    ("😀\n", ""),
])
def test_a_diff_is_a_delta_in_code_points_and_a_unified_diff(http: httpx.Client, make_note,
                                                             old: str, new: str):
    note = make_note("diff", old)
    first = versions_of(http, note["id"])[0]
    http.put(f"/notes/{note['id']}", json={"title": "diff", "content": new})
    changes = http.get(f"/notes/{note['id']}/versions/{first['id']}/diff")
    assert changes.status_code == 200, changes.text
    body = changes.json()
    assert body["from"] == first["id"] and body["to"] is None
    assert apply_delta(old, body["delta"]) == new
    newest = versions_of(http, note["id"])[0]
    between = http.get(f"/notes/{note['id']}/versions/{first['id']}/diff",
                       params={"to": newest["id"]}).json()
    assert between["delta"] == body["delta"] and between["to"] == newest["id"]
    for line in old.splitlines():
        if line not in new.splitlines():
            assert f"-{line}\n" in body["unified"]
    for line in new.splitlines():
        if line not in old.splitlines():
            assert f"+{line}" in body["unified"]
    assert http.get(f"/notes/{note['id']}/versions/{first['id']}/diff",
                    params={"to": "x"}).status_code == 422


def test_naming_the_current_text_labels_it_and_keeps_it(http: httpx.Client, make_note, sql):
    note = make_note("named", "draft")
    named = http.post(f"/notes/{note['id']}/versions", json={"label": "first draft"})
    assert named.status_code == 201, named.text
    assert named.json()["label"] == "first draft"
    items = versions_of(http, note["id"])
    assert len(items) == 1 and items[0]["id"] == named.json()["id"]  # the same text: labelled
    again = http.post(f"/notes/{note['id']}/versions", json={"label": "again"}).json()
    assert again["id"] != named.json()["id"]
    for bad in ({"label": ""}, {"label": " "}, {"label": "x" * 101}, {"label": 3}, {}):
        response = http.post(f"/notes/{note['id']}/versions", json=bad)
        assert response.status_code == 422, (bad, response.text)
    # Named versions survive thinning even when old.
    sql("UPDATE note_versions SET created_at = now() - interval '400 days' WHERE note_id = :id",
        id=note["id"])
    for n in range(3):
        http.put(f"/notes/{note['id']}", json={"title": "named", "content": f"v{n}"})
    labels = [v["label"] for v in versions_of(http, note["id"])]
    assert labels.count("first draft") == 1 and labels.count("again") == 1


def test_a_save_thins_the_stored_versions_as_the_policy_says(http: httpx.Client, make_note,
                                                             sql):
    note = make_note("thin", "start")
    note_id = note["id"]
    # Two days of one version a minute, made directly in the database.
    sql("INSERT INTO note_versions (note_id, created_at, rev, title, content)"
        " SELECT :id, now() - make_interval(mins => n), 0, 'thin', 'old ' || n"
        " FROM generate_series(61, 2 * 24 * 60) AS n", id=note_id)
    before = sql("SELECT id, created_at, label IS NOT NULL FROM note_versions"
                 " WHERE note_id = :id", id=note_id)
    http.put(f"/notes/{note_id}", json={"title": "thin", "content": "changed"})
    after = sql("SELECT id, created_at, label IS NOT NULL FROM note_versions"
                " WHERE note_id = :id", id=note_id)
    newest = max(after)
    assert newest[0] not in {row[0] for row in before}  # the save's own version
    versions = [VersionAge(*row) for row in [*before, newest]]
    now = sql("SELECT clock_timestamp()")[0][0]
    assert {row[0] for row in after} == {v.id for v in versions} - versions_to_drop(versions, now)
    # Of 2,822: the two of the last hour, one per 10 minutes, one per hour.
    assert len(after) < 2 + 24 * 6 + 24 + 2


# --- restore ------------------------------------------------------------------------------------


async def test_restore_on_a_live_note_is_a_diff_both_protocols_keep_typing(server, ahttp):
    note = (await ahttp.post("/notes", json={"title": "v1", "content": "hello world"})).json()
    note_id = note["id"]
    first = (await ahttp.get(f"/notes/{note_id}/versions")).json()["items"][0]
    json_client = await RecordingClient.connect(server.ws_url, note_id, "json")
    async with yjs_clients() as new_client:
        yjs = await new_client("yjs")
        await yjs.connect(server.ws_url + "/yjs", note_id)
        await yjs.wait_synced()
        await json_client.insert(len("hello"), " brave new")
        await yjs.wait_content("hello brave new world")
        await ahttp.patch(f"/notes/{note_id}", json={"title": "v2"})
        await json_client.wait_for(lambda: json_client.title == "v2")
        before = json_client.rev
        # Concurrent with the restore: a Yjs client types offline, an edit made on the old text
        # arrives after it.
        await yjs.disconnect()
        await yjs.insert(0, ">")
        restored = await ahttp.post(f"/notes/{note_id}/versions/{first['id']}/restore")
        assert restored.status_code == 200, restored.text
        assert (restored.json()["title"], restored.json()["content"]) == ("v1", "hello world")
        late = await ahttp.post(f"/notes/{note_id}/edits", json={
            "rev": before, "delta": [{"retain": len("hello brave new world")}, {"insert": "?"}]})
        assert late.status_code == 200, late.text
        await yjs.reconnect()
        await json_client.wait_for(lambda: json_client.text == ">hello world?")
        await json_client.insert(len(json_client.text), "!")
        await json_client.wait_for(lambda: json_client.text == ">hello world?!")
        await yjs.wait_content(">hello world?!")
        assert (await yjs.text())["title"] == "v1"
        await json_client.wait_for(lambda: json_client.title == "v1")
        # Nobody reloaded: one hello, no resync, the restore arrived as edits.
        assert len(json_client.of_type("hello")) == 1 and not json_client.of_type("resync")
        assert json_client.connected
        assert all(close.get("local") for close in yjs.closes) and not yjs.problems
    await json_client.close()
    newest = (await ahttp.get(f"/notes/{note_id}/versions")).json()["items"]
    assert any(v["title"] == "v1" and v["id"] > first["id"] for v in newest)
    assert (await ahttp.post(f"/notes/{note_id}/versions/{2**40}/restore")).status_code == 404


# --- roles --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def history_world(auth_server: ServerProcess) -> World:
    accounts = [sign_up(auth_server.url, name)
                for name in ("owner", "editor", "viewer", "stranger")]
    return World(auth_server.url, *accounts)


@pytest.mark.parametrize("caller, read, write", [
    ("owner", 200, (201, 200)), ("editor", 200, (201, 200)), ("viewer", 200, (403, 403)),
    ("stranger", 404, (404, 404)), ("nobody", 401, (401, 401)),
])
def test_viewers_read_history_editors_also_name_and_restore(history_world: World, caller: str,
                                                            read: int, write: tuple[int, int]):
    world = history_world
    note_id = world.note("first")
    owner = world.owner.bearer()
    httpx.put(f"{world.url}/notes/{note_id}", json={"title": "shared", "content": "second"},
              headers=owner)
    items = httpx.get(f"{world.url}/notes/{note_id}/versions", headers=owner).json()["items"]
    oldest = items[-1]["id"]
    assert [v["authors"] for v in items] == [[world.owner.username]] * 2
    headers = {} if caller == "nobody" else getattr(world, caller).bearer()
    base = f"{world.url}/notes/{note_id}/versions"
    for url in (base, f"{base}/{oldest}", f"{base}/{oldest}/diff"):
        assert httpx.get(url, headers=headers).status_code == read, url
    named = httpx.post(base, json={"label": "mine"}, headers=headers)
    restored = httpx.post(f"{base}/{oldest}/restore", headers=headers)
    assert (named.status_code, restored.status_code) == write
    content = httpx.get(f"{world.url}/notes/{note_id}", headers=owner).json()["content"]
    assert content == ("first" if write[1] == 200 else "second")
    if write[1] == 200:
        newest = httpx.get(base, headers=owner).json()["items"][0]
        assert newest["authors"] == [getattr(world, caller).username]


# --- the trash ----------------------------------------------------------------------------------


async def test_delete_moves_to_the_trash_and_restore_brings_it_back(server, ahttp, sql):
    note = (await ahttp.post("/notes", json={"title": "trashme zebracorn", "content": "x"})
            ).json()
    note_id = note["id"]
    client = await LiveClient.connect(server.ws_url, note_id, "typist")
    await client.insert(1, "yz")  # acknowledged (stored), maybe not saved yet
    await client.wait_for(lambda: not client.state.pending)
    assert (await ahttp.delete(f"/notes/{note_id}")).status_code == 204
    await client.wait_for(lambda: client.deleted and client.closed_code == 4404)
    assert (await ahttp.get(f"/notes/{note_id}")).status_code == 404
    assert (await ahttp.get(f"/notes/{note_id}/versions")).status_code == 404
    assert (await ahttp.put(f"/notes/{note_id}", json={"title": "a", "content": "b"})
            ).status_code == 404
    assert (await ahttp.delete(f"/notes/{note_id}")).status_code == 404
    listed = (await ahttp.get("/notes", params={"q": "zebracorn"})).json()["items"]
    assert listed == []
    trash = (await ahttp.get("/trash", params={"limit": 200})).json()["items"]
    entry = next(item for item in trash if item["id"] == note_id)
    deleted_at = datetime.fromisoformat(entry["deleted_at"])
    assert datetime.fromisoformat(entry["purge_at"]) - deleted_at == timedelta(days=30)
    with pytest.raises(LiveClosed):
        await LiveClient.connect(server.ws_url, note_id, "late", reconnect=False)
    # Back, with the text typed before the delete and with its history.
    back = await ahttp.post(f"/trash/{note_id}/restore")
    assert back.status_code == 200, back.text
    assert back.json()["content"] == "xyz"
    assert (await ahttp.get(f"/notes/{note_id}")).json()["content"] == "xyz"
    assert len((await ahttp.get(f"/notes/{note_id}/versions")).json()["items"]) >= 2
    assert (await ahttp.get("/notes", params={"q": "zebracorn"})).json()["items"]
    assert (await ahttp.post(f"/trash/{note_id}/restore")).status_code == 404  # not in it now
    # Deleted for good: the row and its history are gone.
    await ahttp.delete(f"/notes/{note_id}")
    assert (await ahttp.delete(f"/trash/{note_id}")).status_code == 204
    for table, column in (("notes", "id"), ("note_versions", "note_id")):
        rows = await asyncio.to_thread(sql, f"SELECT count(*) FROM {table} WHERE {column} = :id",
                                       id=note_id)
        assert rows[0][0] == 0, table
    assert (await ahttp.delete(f"/trash/{note_id}")).status_code == 404


def test_the_trash_is_mine_only(history_world: World):
    world = history_world
    note_id = world.note("private trash")
    url = world.url
    assert httpx.delete(f"{url}/notes/{note_id}", headers=world.editor.bearer()
                        ).status_code == 403
    assert httpx.delete(f"{url}/notes/{note_id}", headers=world.owner.bearer()
                        ).status_code == 204
    for account in (world.editor, world.viewer, world.stranger):
        headers = account.bearer()
        listed = httpx.get(f"{url}/trash", headers=headers).json()["items"]
        assert note_id not in {item["id"] for item in listed}
        assert httpx.post(f"{url}/trash/{note_id}/restore", headers=headers).status_code == 404
        assert httpx.delete(f"{url}/trash/{note_id}", headers=headers).status_code == 404
        assert httpx.get(f"{url}/notes/{note_id}", headers=headers).status_code == 404
    mine = httpx.get(f"{url}/trash", headers=world.owner.bearer()).json()["items"]
    assert note_id in {item["id"] for item in mine}
    assert httpx.get(f"{url}/trash").status_code == 401
    # Restored: the shares are back too.
    assert httpx.post(f"{url}/trash/{note_id}/restore", headers=world.owner.bearer()
                      ).status_code == 200
    assert httpx.get(f"{url}/notes/{note_id}", headers=world.viewer.bearer()).json()["role"] \
        == "viewer"


def test_trashed_notes_are_purged_after_trash_days(database_url: str, sql):
    server = ServerProcess(database_url, env={"NOTES_TRASH_DAYS": "0.00002",  # ~1.7 s
                                              "NOTES_TRASH_PURGE_INTERVAL": "0.2"},
                           log_name="purge-server").start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            kept_id = http.post("/notes", json={"title": "kept"}).json()["id"]
            gone_id = http.post("/notes", json={"title": "purged"}).json()["id"]
            assert http.delete(f"/notes/{gone_id}").status_code == 204
            wait_until(lambda: not sql("SELECT 1 FROM notes WHERE id = :id", id=gone_id), 10,
                       interval=0.1, message="the purge")
            assert http.get(f"/notes/{kept_id}").status_code == 200
    finally:
        server.stop()


# --- downloads ----------------------------------------------------------------------------------


@pytest.mark.parametrize("accept, media_type, extension", [
    ("text/markdown", "text/markdown", ".md"),
    ("text/plain", "text/plain", ".txt"),
    ("text/markdown;q=0.5, application/json", "application/json", None),
    ("*/*", "application/json", None),
])
def test_a_note_downloads_as_markdown_or_text(http: httpx.Client, make_note, accept: str,
                                              media_type: str, extension: str | None):
    content = "# Café 漢字 😀\r\nline\n"
    note = make_note('Notes: "a/b" 漢', content)
    response = http.get(f"/notes/{note['id']}", headers={"Accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media_type)
    if extension is None:
        assert response.json()["content"] == content
        return
    assert response.content == content.encode()
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment;") and f'.{extension[1:]}"' in disposition
    assert "filename*=UTF-8''Notes%20a%20b%20%E6%BC%A2" in disposition
    etag = response.headers["etag"]
    assert etag != http.get(f"/notes/{note['id']}").headers["etag"]
    assert http.get(f"/notes/{note['id']}", headers={"Accept": accept, "If-None-Match": etag}
                    ).status_code == 304
