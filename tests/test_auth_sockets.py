"""Accounts on both sockets (JSON ``/notes/{id}/live`` and Yjs ``/yjs/{id}``): credentials and
roles at the handshake, viewers refused, and sockets closed when a share, token or session ends,
here and on another server process."""

from __future__ import annotations

import httpx
import pytest
from conftest import ServerProcess, wait_for
from live_helpers import Raw
from pycrdt import Doc, Text
from test_auth import CALLERS, World, headers_of, sign_up
from websockets.asyncio.client import connect as ws_connect
from yjs_node import NodeYjsClient
from yjs_py import RawYjs, yjs_url

from notes.collab.lib0 import Reader
from notes.collab.yjs import MESSAGE_AUTH, SYNC_UPDATE, sync_message

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def world(auth_server: ServerProcess) -> World:
    accounts = [sign_up(auth_server.url, name)
                for name in ("owner", "editor", "viewer", "stranger")]
    return World(auth_server.url, *accounts)


def token_of(world: World, caller: str) -> str | None:
    header = headers_of(world, caller).get("Authorization")
    return None if header is None else header.removeprefix("Bearer ")


def content_of(world: World, note_id: str) -> str:
    response = httpx.get(f"{world.url}/notes/{note_id}", headers=world.owner.bearer())
    return response.json()["content"]


def yjs_insert(state_source: RawYjs, at: int, text: str) -> bytes:
    """An update inserting ``text`` into the document the raw client was sent."""
    doc = Doc()
    doc.apply_update(state_source.doc.get_update())
    before = doc.get_state()
    doc.get("content", type=Text).insert(at, text)
    return doc.get_update(before)


async def open_json(world: World, note_id: str, caller: str, **kwargs) -> Raw:
    return await Raw.open(world.url, note_id, caller, expect_hello=False,
                          token=token_of(world, caller), **kwargs)


async def open_yjs(world: World, note_id: str, caller: str) -> RawYjs:
    token = token_of(world, caller)
    params = {} if token is None else {"token": token}
    ws_base = world.url.replace("http://", "ws://")
    return RawYjs(await ws_connect(yjs_url(ws_base, note_id, **params), proxy=None))


EXPECTED_OPEN = {"nobody": 4401, "bad_token": 4401, "stranger": 4404,
                 "viewer": None, "editor": None, "owner": None}


@pytest.mark.parametrize("caller", CALLERS)
async def test_json_socket_by_caller(world: World, caller: str):
    note_id = world.note("abc")
    raw = await open_json(world, note_id, caller)
    try:
        if EXPECTED_OPEN[caller] is not None:
            code, seen = await raw.closed()
            assert code == EXPECTED_OPEN[caller]
            assert seen == []  # nothing about the note was sent
            return
        hello = await raw.recv()
        assert hello["type"] == "hello" and hello["content"] == "abc"
        await raw.send({"type": "edit", "rev": hello["rev"], "delta": [{"insert": "X"}],
                        "ref": "r1"})
        answer = await raw.next("ack", "error")
        if caller == "viewer":
            assert (answer["type"], answer["code"], answer["ref"]) == ("error", "forbidden", "r1")
            await raw.send({"type": "title", "title": "viewer's"})
            assert (await raw.next("error"))["code"] == "forbidden"
            # Presence is reading, not writing: allowed.
            await raw.send({"type": "presence", "rev": hello["rev"],
                            "cursor": {"index": 1, "length": 0}})
            assert content_of(world, note_id) == "abc"
        else:
            assert answer["type"] == "ack"
            assert content_of(world, note_id) == "Xabc"
    finally:
        await raw.close()


@pytest.mark.parametrize("caller", CALLERS)
async def test_yjs_socket_by_caller(world: World, caller: str):
    note_id = world.note("abc")
    raw = await open_yjs(world, note_id, caller)
    try:
        if EXPECTED_OPEN[caller] is not None:
            code, _ = await raw.closed()
            assert code == EXPECTED_OPEN[caller]
            return
        await raw.handshake()
        assert raw.text() == "abc"
        await raw.send(sync_message(SYNC_UPDATE, yjs_insert(raw, 0, "Y")))
        if caller == "viewer":
            kind, _, payload = await raw.recv()
            while kind != MESSAGE_AUTH:
                kind, _, payload = await raw.recv()
            reader = Reader(bytes([0]) + payload)  # recv read the reason as the payload
            assert reader.uint() == 0
            # Still open, and still reading: the owner's edit arrives.
            owner = await open_json(world, note_id, "owner")
            hello = await owner.recv()
            await owner.send({"type": "edit", "rev": hello["rev"], "delta": [{"insert": "O"}]})
            await owner.next("ack")
            await owner.close()
            while raw.text() != "Oabc":
                await raw.recv()
            assert content_of(world, note_id) == "Oabc"
        else:
            await wait_for(lambda: content_of(world, note_id) == "Yabc", 10, "the update stored")
    finally:
        await raw.close()


async def test_viewer_receives_edits_and_presence_live(world: World):
    note_id = world.note("")
    viewer = await open_json(world, note_id, "viewer")
    editor = await open_json(world, note_id, "editor")
    try:
        assert (await viewer.recv())["type"] == "hello"
        hello = await editor.recv()
        await editor.send({"type": "presence", "rev": hello["rev"],
                           "cursor": {"index": 0, "length": 0}})
        await editor.send({"type": "edit", "rev": hello["rev"], "delta": [{"insert": "hi"}]})
        assert (await viewer.next("presence"))["client"] == hello["client"]
        edit = await viewer.next("edit")
        assert edit["delta"] == [{"insert": "hi"}]
    finally:
        await viewer.close()
        await editor.close()


async def test_revoking_a_share_closes_that_users_sockets_at_once(world: World):
    note_id = world.note("abc")
    viewer_json = await open_json(world, note_id, "viewer")
    viewer_yjs = await open_yjs(world, note_id, "viewer")
    editor = await open_json(world, note_id, "editor")
    try:
        assert (await viewer_json.recv())["type"] == "hello"
        await viewer_yjs.handshake()
        assert (await editor.recv())["type"] == "hello"
        revoked = httpx.delete(f"{world.url}/notes/{note_id}/shares/{world.viewer.username}",
                               headers=world.owner.bearer())
        assert revoked.status_code == 204
        assert (await viewer_json.closed())[0] == 4403
        assert (await viewer_yjs.closed())[0] == 4403
        # The editor's socket is untouched.
        await editor.send({"type": "edit", "rev": 0, "delta": [{"insert": "E"}]})
        assert (await editor.next("ack"))["type"] == "ack"
        # And the viewer cannot come back.
        again = await open_json(world, note_id, "viewer")
        assert (await again.closed())[0] == 4404
    finally:
        for socket in (viewer_json, viewer_yjs, editor):
            await socket.close()


async def test_a_share_made_viewer_while_open_stops_writing(world: World):
    note_id = world.note("abc")
    editor = await open_json(world, note_id, "editor")
    try:
        hello = await editor.recv()
        changed = httpx.put(f"{world.url}/notes/{note_id}/shares/{world.editor.username}",
                            json={"role": "viewer"}, headers=world.owner.bearer())
        assert changed.status_code == 200
        await editor.send({"type": "edit", "rev": hello["rev"], "delta": [{"insert": "X"}]})
        assert (await editor.next("ack", "error"))["code"] == "forbidden"
        assert content_of(world, note_id) == "abc"
    finally:
        await editor.close()


async def test_deleting_a_token_closes_its_sockets_with_4401(world: World):
    account = sign_up(world.url, "sockettoken")
    note_id = httpx.post(world.url + "/notes", json={"title": "t"},
                         headers=account.bearer()).json()["id"]
    spare = account.client.post("/auth/tokens", json={"name": "spare"}).json()
    by_token = await Raw.open(world.url, note_id, token=spare["token"])
    by_other = await Raw.open(world.url, note_id, token=account.token)
    try:
        assert account.client.delete(f"/auth/tokens/{spare['id']}").status_code == 204
        assert (await by_token.closed())[0] == 4401
        # The same user's other token keeps its socket.
        await by_other.send({"type": "edit", "rev": by_other.hello["rev"],
                             "delta": [{"insert": "still here"}]})
        assert (await by_other.next("ack"))["type"] == "ack"
    finally:
        await by_token.close()
        await by_other.close()


def cookie_header(account) -> dict[str, str]:
    return {"Cookie": f"notes_session={account.client.cookies['notes_session']}"}


async def test_cookie_sockets_check_origin(world: World):
    account = sign_up(world.url, "origin")
    note_id = httpx.post(world.url + "/notes", json={"title": "t", "content": "c"},
                         headers=account.bearer()).json()["id"]
    own = await Raw.open(world.url, note_id, additional_headers={
        **cookie_header(account), "Origin": world.url})
    await own.close()
    no_origin = await Raw.open(world.url, note_id, additional_headers=cookie_header(account))
    await no_origin.close()
    evil = await Raw.open(world.url, note_id, expect_hello=False, additional_headers={
        **cookie_header(account), "Origin": "https://evil.example"})
    code, seen = await evil.closed()
    assert (code, seen) == (4403, [])
    ws_base = world.url.replace("http://", "ws://")
    evil_yjs = RawYjs(await ws_connect(yjs_url(ws_base, note_id), proxy=None, additional_headers={
        **cookie_header(account), "Origin": "https://evil.example"}))
    assert (await evil_yjs.closed())[0] == 4403


async def test_logout_closes_the_sessions_sockets(world: World):
    account = sign_up(world.url, "logout")
    note_id = httpx.post(world.url + "/notes", json={"title": "t"},
                         headers=account.bearer()).json()["id"]
    by_cookie = await Raw.open(world.url, note_id, additional_headers=cookie_header(account))
    by_token = await Raw.open(world.url, note_id, token=account.token)
    try:
        assert account.client.post("/auth/logout").status_code == 204
        assert (await by_cookie.closed())[0] == 4401
        await by_token.send({"type": "edit", "rev": by_token.hello["rev"],
                             "delta": [{"insert": "x"}]})
        assert (await by_token.next("ack"))["type"] == "ack"
    finally:
        await by_cookie.close()
        await by_token.close()


async def test_y_websocket_client_passes_its_token_in_params(world: World):
    """The npm y-websocket provider, with ``params: {token}``: syncs as an editor; a viewer's
    typing is not applied (the server answers with permission-denied)."""
    note_id = world.note("abc")
    ws_base = world.url.replace("http://", "ws://") + "/yjs"
    editor = await NodeYjsClient("editor-token").start()
    viewer = await NodeYjsClient("viewer-token").start()
    try:
        await editor.call("connect", url=ws_base, room=note_id,
                          params={"token": world.editor.token})
        await viewer.call("connect", url=ws_base, room=note_id,
                          params={"token": world.viewer.token})
        await editor.wait_synced()
        await viewer.wait_synced()
        await editor.call("insert", index=0, text="E")
        await wait_for(lambda: content_of(world, note_id) == "Eabc", 10, "the editor's insert")
        await viewer.call("insert", index=0, text="V")
        await viewer.wait_event(lambda event: event["event"] == "console"
                                and "Permission denied" in event["message"],
                                message="the permission-denied warning")
        assert content_of(world, note_id) == "Eabc"
    finally:
        await editor.close()
        await viewer.close()


async def test_revocation_reaches_another_process(world: World, database_url: str):
    """The share is revoked on one server process; the socket on another closes at once."""
    other = ServerProcess(database_url, env={"NOTES_AUTH": "on"}, log_name="auth-second").start()
    try:
        note_id = world.note("abc")
        viewer = await Raw.open(other.url, note_id, token=world.viewer.token)
        yjs = RawYjs(await ws_connect(yjs_url(other.ws_url, note_id, token=world.viewer.token),
                                      proxy=None))
        await yjs.handshake()
        assert httpx.delete(f"{world.url}/notes/{note_id}/shares/{world.viewer.username}",
                            headers=world.owner.bearer()).status_code == 204
        assert (await viewer.closed())[0] == 4403
        assert (await yjs.closed())[0] == 4403
        token_user = sign_up(world.url, "crosstoken")
        own = httpx.post(world.url + "/notes", json={"title": "t"},
                         headers=token_user.bearer()).json()["id"]
        socket = await Raw.open(other.url, own, token=token_user.token)
        token_id = token_user.client.get("/auth/tokens").json()["items"][0]["id"]
        assert token_user.client.delete(f"/auth/tokens/{token_id}").status_code == 204
        assert (await socket.closed())[0] == 4401
    finally:
        other.stop()


async def test_yjs_handshake_with_a_bad_room_and_no_credentials_is_4401(world: World):
    ws_base = world.url.replace("http://", "ws://")
    raw = RawYjs(await ws_connect(f"{ws_base}/yjs/not-a-uuid", proxy=None))
    assert (await raw.closed())[0] == 4401
    raw = RawYjs(await ws_connect(f"{ws_base}/yjs/not-a-uuid?token={world.owner.token}",
                                  proxy=None))
    assert (await raw.closed())[0] == 4404


async def test_share_link_sockets_and_revocation(world: World):
    note_id = world.note("abc")
    links = {role: httpx.post(f"{world.url}/notes/{note_id}/links", json={"role": role},
                              headers=world.owner.bearer()).json() for role in ("viewer", "editor")}
    viewer = await Raw.open(world.url, note_id, token=links["viewer"]["token"])
    editor = await Raw.open(world.url, note_id, token=links["editor"]["token"])
    ws_base = world.url.replace("http://", "ws://")
    yjs = RawYjs(await ws_connect(yjs_url(ws_base, note_id, token=links["viewer"]["token"]),
                                  proxy=None))
    try:
        await yjs.handshake()
        await viewer.send({"type": "edit", "rev": viewer.hello["rev"],
                           "delta": [{"insert": "V"}]})
        assert (await viewer.next("ack", "error"))["code"] == "forbidden"
        await editor.send({"type": "edit", "rev": editor.hello["rev"],
                           "delta": [{"insert": "E"}]})
        assert (await editor.next("ack"))["type"] == "ack"
        other = await Raw.open(world.url, world.note(), expect_hello=False,
                               token=links["editor"]["token"])
        assert (await other.closed())[0] == 4404  # the link opens its own note only
        assert httpx.delete(f"{world.url}/notes/{note_id}/links/{links['viewer']['id']}",
                            headers=world.owner.bearer()).status_code == 204
        assert (await viewer.closed())[0] == 4401
        assert (await yjs.closed())[0] == 4401
        await editor.send({"type": "edit", "rev": editor.hello["rev"] + 1,
                           "delta": [{"insert": "F"}]})
        assert (await editor.next("ack"))["type"] == "ack"
        assert content_of(world, note_id) == "FEabc"
    finally:
        for socket in (viewer, editor, yjs):
            await socket.close()
