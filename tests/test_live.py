"""Live editing against the session server: real sockets, real PostgreSQL, concurrent clients."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest
from conftest import wait_for
from live_helpers import (
    Fresh,
    Raw,
    RecordingClient,
    close_all,
    connect_all,
    create_note,
    type_randomly,
    wait_converged,
    yjs_text,
)

from notes.client import LiveClient


def assert_every_revision_once(client: RecordingClient, final_rev: int) -> None:
    """After hello, revisions arrive as ack or edit, each exactly once, strictly in order."""
    start = client.hello_revs[0]
    assert start is not None
    assert client.revisions() == list(range(start + 1, final_rev + 1)), client.name


# --- convergence ---------------------------------------------------------------------------


async def test_concurrent_typing_converges_everywhere_and_is_stored(server, ahttp, db):
    note_id = await create_note(ahttp, content="héllo 漢字 😀")
    clients = await connect_all(server.url, note_id, 5, cls=RecordingClient)
    try:
        start_rev = clients[0].rev
        await asyncio.gather(*(type_randomly(client, random.Random(seed), 80)
                               for seed, client in enumerate(clients)))
        text = await wait_converged(clients)
        final_rev = clients[0].rev
        assert final_rev > start_rev + 5
        assert any(char in text for char in "é漢😀")

        # Every revision reached every client exactly once, in order (ack or edit).
        for client in clients:
            assert_every_revision_once(client, final_rev)
            acked = [m for m in client.messages if m["type"] == "ack"]
            assert acked, "each client had edits acknowledged"
            assert all(m["ref"].startswith(client.state.session) for m in acked)
        # Each revision was acked to exactly one client and came as an edit to all others.
        acks = Counter(m["rev"] for c in clients for m in c.of_type("ack"))
        assert sorted(acks) == list(range(start_rev + 1, final_rev + 1))
        assert set(acks.values()) == {1}

        note = (await ahttp.get(f"/notes/{note_id}")).json()
        assert note["content"] == text
        assert note["rev"] == final_rev

        # The debounced save sends `saved` with the final revision; the row then holds it all.
        await wait_for(lambda: all(c.saved_rev == final_rev for c in clients), 5,
                       "saved with the final revision")
        row = await db.row(note_id)
        assert row.content == text
        assert row.rev == final_rev
        assert yjs_text(row.yjs_state) == text
        # Every edit's ref is kept with the snapshot once its log rows are compacted.
        assert set(row.refs) >= {m["ref"] for c in clients for m in c.of_type("ack")}
    finally:
        await close_all(clients)


async def test_concurrent_inserts_at_one_position_keep_server_order(server, ahttp):
    note_id = await create_note(ahttp, content="a😀b")
    a, b, watcher = await connect_all(server.url, note_id, 3, cls=RecordingClient)
    try:
        for round_ in range(8):
            base = a.text
            base_rev = a.rev
            position = round_ % (len(base) + 1)
            mine, theirs = f"<A{round_}é>", f"<B{round_}漢>"
            await asyncio.gather(a.insert(position, mine), b.insert(position, theirs))
            text = await wait_converged([a, b, watcher])
            # Both edits were made on the same revision: a real tie.
            assert a.sent[-1]["rev"] == b.sent[-1]["rev"] == base_rev
            ack_a, ack_b = a.of_type("ack")[-1]["rev"], b.of_type("ack")[-1]["rev"]
            assert {ack_a, ack_b} == {base_rev + 1, base_rev + 2}
            first, second = (mine, theirs) if ack_a < ack_b else (theirs, mine)
            assert text == base[:position] + first + second + base[position:]
            assert watcher.text == text
    finally:
        await close_all([a, b, watcher])


async def test_tie_order_follows_arrival_with_raw_sockets(server, ahttp):
    """Deterministic ties: the edit the server received first goes first, either way round."""
    note_id = await create_note(ahttp, content="xy")
    one = await Raw.open(server.url, note_id, "one")
    two = await Raw.open(server.url, note_id, "two")
    try:
        rev = one.hello["rev"]
        await one.send({"type": "edit", "rev": rev, "delta": [{"retain": 1}, {"insert": "1"}],
                        "ref": "one-1"})
        assert (await one.next("ack"))["rev"] == rev + 1
        # `two` has not applied revision rev+1 yet: its edit is based on rev.
        await two.send({"type": "edit", "rev": rev, "delta": [{"retain": 1}, {"insert": "2"}],
                        "ref": "two-1"})
        incoming = await two.next("edit")
        assert incoming == {"type": "edit", "rev": rev + 1, "client": one.id,
                            "delta": [{"retain": 1}, {"insert": "1"}]}
        assert await two.next("ack") == {"type": "ack", "rev": rev + 2, "ref": "two-1"}
        # `one` gets two's edit transformed to go after its own insert.
        assert (await one.next("edit"))["delta"] == [{"retain": 2}, {"insert": "2"}]
        assert (await ahttp.get(f"/notes/{note_id}")).json()["content"] == "x12y"

        # The other way round.
        await two.send({"type": "edit", "rev": rev + 2, "delta": [{"insert": "B"}],
                        "ref": "two-2"})
        assert (await two.next("ack"))["rev"] == rev + 3
        await one.send({"type": "edit", "rev": rev + 2, "delta": [{"insert": "A"}],
                        "ref": "one-2"})
        assert (await one.next("edit"))["rev"] == rev + 3
        assert (await one.next("ack"))["rev"] == rev + 4
        assert (await two.next("edit"))["delta"] == [{"retain": 1}, {"insert": "A"}]
        assert (await ahttp.get(f"/notes/{note_id}")).json()["content"] == "BAx12y"
    finally:
        await one.close()
        await two.close()


# --- presence, join, leave, title ------------------------------------------------------------


async def test_presence_join_leave_and_title(server, ahttp, db):
    note_id = await create_note(ahttp, title="before", content="0123456789")
    alice = await Raw.open(server.url, note_id, "alice")
    bob = None
    carol = None
    try:
        assert alice.hello["peers"] == []
        assert alice.hello["title"] == "before"
        bob = await Raw.open(server.url, note_id, "bob 😀")
        assert bob.hello["peers"] == [{"client": alice.id, "name": "alice", "cursor": None}]
        assert await alice.next("join") == {"type": "join", "client": bob.id, "name": "bob 😀"}

        rev = alice.hello["rev"]
        await alice.send({"type": "presence", "rev": rev, "cursor": {"index": 3, "length": 2}})
        assert await bob.next("presence") == {
            "type": "presence", "client": alice.id, "name": "alice",
            "cursor": {"index": 3, "length": 2}}

        # Bob inserts before alice's cursor: the server moves the cursor it remembers.
        await bob.send({"type": "edit", "rev": rev, "delta": [{"insert": "漢😀é"}], "ref": "b1"})
        assert (await bob.next("ack"))["rev"] == rev + 1
        assert (await alice.next("edit"))["rev"] == rev + 1
        carol = await Raw.open(server.url, note_id, "carol")
        peers = {peer["client"]: peer for peer in carol.hello["peers"]}
        assert peers[alice.id]["cursor"] == {"index": 6, "length": 2}
        assert peers[bob.id] == {"client": bob.id, "name": "bob 😀", "cursor": None}

        # A cursor sent on an older revision is moved through the later edits before it is shared.
        await alice.send({"type": "presence", "rev": rev, "cursor": {"index": 5, "length": 0}})
        moved = await bob.next("presence")
        assert moved["cursor"] == {"index": 8, "length": 0}
        assert (await carol.next("presence"))["cursor"] == {"index": 8, "length": 0}

        # Title: everyone else hears it, the sender does not; it is saved.
        await alice.send({"type": "title", "title": "after 😀"})
        assert await bob.next("title") == {"type": "title", "title": "after 😀",
                                           "client": alice.id}
        assert (await carol.next("title"))["client"] == alice.id
        assert (await ahttp.get(f"/notes/{note_id}")).json()["title"] == "after 😀"
        await db.wait_row(note_id, lambda row: row.title == "after 😀", 5, "the saved title")

        # Leave.
        await alice.close()
        assert await bob.next("leave") == {"type": "leave", "client": alice.id}
        assert await carol.next("leave") == {"type": "leave", "client": alice.id}
        # Alice never got her own title or presence back.
    finally:
        for raw in (alice, bob, carol):
            if raw is not None:
                await raw.close()


async def test_live_client_tracks_peers_and_title(server, ahttp):
    note_id = await create_note(ahttp, content="")
    first = await LiveClient.connect(server.url, note_id, name="first")
    second = await LiveClient.connect(server.url, note_id, name="second")
    try:
        assert second.peers == {first.client_id: {"name": "first", "cursor": None}}
        await first.wait_for(lambda: second.client_id in first.peers)
        await second.set_cursor({"index": 0, "length": 0})
        await first.wait_for(
            lambda: first.peers[second.client_id]["cursor"] == {"index": 0, "length": 0})
        await first.set_title("shared")
        await second.wait_for(lambda: second.title == "shared")
        await second.close()
        await first.wait_for(lambda: second.client_id not in first.peers)
    finally:
        await close_all([first, second])


# --- reconnect ---------------------------------------------------------------------------------


async def test_reconnect_after_drop_loses_and_doubles_nothing(server, ahttp):
    note_id = await create_note(ahttp, content="")
    clients = await connect_all(server.url, note_id, 3, cls=RecordingClient)
    fresh = [Fresh(i) for i in range(3)]
    try:
        rng = random.Random(7)
        drops = Counter()
        for round_ in range(4):
            index = round_ % 3
            victim = clients[index]
            typing = [type_randomly(c, random.Random(rng.random()), 15, deletes=False,
                                    chars=fresh[i]) for i, c in enumerate(clients)]
            await asyncio.gather(*typing[:2])
            # Drop one connection right after it sent edits (the ack may or may not be lost),
            # and keep typing on it while it is disconnected.
            victim.drop()
            drops[index] += 1
            await type_randomly(victim, rng, 10, deletes=False, chars=fresh[index])
            await typing[2]
            await victim.wait_for(lambda v=victim, n=drops[index]: len(v.hello_revs) == n + 1)
            text = await wait_converged(clients)
            typed = [char for f in fresh for char in f.used]
            counts = Counter(text)
            assert sorted(counts) == sorted(typed), "every typed character is there"
            assert set(counts.values()) == {1}, "and none twice"
        assert (await ahttp.get(f"/notes/{note_id}")).json()["content"] == text
        # Every reconnect resumed with `since` and got what it missed (the history reaches back).
        for client in clients:
            assert len(client.hellos) == drops[clients.index(client)] + 1
            assert all("missed" in hello and hello["since"] is not None
                       for hello in client.hellos[1:])
    finally:
        await close_all(clients)


# --- REST beside live ---------------------------------------------------------------------------


async def test_patch_while_clients_type_keeps_their_typing(server, ahttp):
    header = "HEADER line\n"
    note_id = await create_note(ahttp, content=header + "body:")
    clients = await connect_all(server.url, note_id, 3, cls=RecordingClient)
    fresh = [Fresh(10 + i) for i in range(3)]
    stop = asyncio.Event()

    async def type_in_body(index: int) -> None:
        client, rng = clients[index], random.Random(index)
        while not stop.is_set():
            body_start = client.text.index("\n") + 1
            position = rng.randint(body_start + 5, len(client.text))
            await client.insert(position, next(fresh[index]))
            await asyncio.sleep(0.02)

    typing = [asyncio.create_task(type_in_body(i)) for i in range(3)]
    try:
        await asyncio.sleep(0.1)  # let typing get going: the PATCH must land in the middle of it
        for _attempt in range(100):
            current = await ahttp.get(f"/notes/{note_id}")
            content = current.json()["content"]
            assert content.startswith(header)
            patched = "New header 😀\n" + content[len(header):]
            response = await ahttp.patch(f"/notes/{note_id}", json={"content": patched},
                                         headers={"If-Match": current.headers["etag"]})
            if response.status_code == 200:
                break
            assert response.status_code == 412, response.text
        else:
            pytest.fail("the PATCH never got in between the typing")
        typed_before = sum(len(f.used) for f in fresh)
        await asyncio.sleep(0.1)  # typing continues after the PATCH too
        stop.set()
        await asyncio.gather(*typing)
        text = await wait_converged(clients)
        assert text.startswith("New header 😀\nbody:")
        typed = [char for f in fresh for char in f.used]
        assert 0 < typed_before < len(typed)
        assert Counter(text[len("New header 😀\nbody:"):]) == Counter(typed)
        for client in clients:
            rest_edit = [m for m in client.of_type("edit") if m["client"] is None]
            assert len(rest_edit) == 1
            # A minimal diff: only the header changed, the body was not rewritten.
            delta = rest_edit[0]["delta"]
            assert sum(op.get("delete", 0) for op in delta) <= len("HEADER line")
            assert_every_revision_once(client, client.rev)
        assert (await ahttp.get(f"/notes/{note_id}")).json()["content"] == text
    finally:
        stop.set()
        for task in typing:
            task.cancel()
        await asyncio.gather(*typing, return_exceptions=True)
        await close_all(clients)


async def test_put_on_open_note_merges_with_an_edit_in_flight(server, ahttp):
    note_id = await create_note(ahttp, title="t", content="one two three")
    raw = await Raw.open(server.url, note_id, "typist")
    try:
        rev = raw.hello["rev"]
        response = await ahttp.put(f"/notes/{note_id}",
                                   json={"title": "t2", "content": "ONE two three"})
        assert response.status_code == 200
        assert response.json()["content"] == "ONE two three"
        rest = await raw.next("edit")
        assert rest["client"] is None and rest["rev"] == rev + 1
        assert rest["delta"] == [{"insert": "ONE"}, {"delete": 3}]
        assert await raw.next("title") == {"type": "title", "title": "t2", "client": None}
        # An edit typed before the PUT arrived (on rev) lands where it was meant.
        await raw.send({"type": "edit", "rev": rev, "ref": "r1",
                        "delta": [{"retain": 7}, {"insert": " and a half"}]})
        assert (await raw.next("ack"))["rev"] == rev + 2
        note = (await ahttp.get(f"/notes/{note_id}")).json()
        assert note["content"] == "ONE two and a half three"
        assert note["title"] == "t2"
    finally:
        await raw.close()


async def test_post_edits_applies_transforms_and_broadcasts(server, ahttp):
    note_id = await create_note(ahttp, content="abc")
    client = await RecordingClient.connect(server.url, note_id, name="watcher")
    try:
        rev = client.rev
        await client.insert(0, "😀")
        await client.synced()
        response = await ahttp.post(f"/notes/{note_id}/edits",
                                    json={"rev": rev, "delta": [{"retain": 3}, {"insert": "!"}]})
        assert response.status_code == 200, response.text
        epoch = client.state.epoch
        assert response.json() == {"rev": rev + 2, "epoch": epoch,
                                   "delta": [{"retain": 4}, {"insert": "!"}]}
        await client.wait_for(lambda: client.rev == rev + 2)
        assert client.of_type("edit")[-1] == {"type": "edit", "rev": rev + 2, "client": None,
                                              "delta": [{"retain": 4}, {"insert": "!"}]}
        assert client.text == "😀abc!"
        assert (await ahttp.get(f"/notes/{note_id}")).json()["content"] == "😀abc!"

        misfit = await ahttp.post(f"/notes/{note_id}/edits",
                                  json={"rev": rev + 2, "delta": [{"retain": 6}]})
        assert misfit.status_code == 422, misfit.text
        assert misfit.headers["content-type"].startswith("application/problem+json")
        future = await ahttp.post(f"/notes/{note_id}/edits",
                                  json={"rev": rev + 50, "delta": []})
        assert future.status_code == 422, future.text
        # A revision of another process's numbering is not taken for this one's: 409, rebase.
        elsewhere = await ahttp.post(f"/notes/{note_id}/edits", json={
            "rev": rev + 2, "epoch": "another", "delta": [{"insert": "?"}]})
        assert elsewhere.status_code == 409, elsewhere.text
        assert elsewhere.json()["rev"] == rev + 2 and elsewhere.json()["epoch"] == epoch
        assert elsewhere.json()["content"] == "😀abc!"
        same = await ahttp.post(f"/notes/{note_id}/edits", json={
            "rev": rev + 2, "epoch": epoch, "delta": [{"insert": "¿"}]})
        assert same.status_code == 200, same.text
        assert client.rev == rev + 3
        note = (await ahttp.get(f"/notes/{note_id}")).json()
        assert (note["content"], note["rev"], note["epoch"]) == ("¿😀abc!", rev + 3, epoch)
    finally:
        await client.close()


async def test_post_edits_to_unknown_note_is_404(ahttp):
    response = await ahttp.post("/notes/00000000-0000-4000-8000-000000000000/edits",
                                json={"rev": 0, "delta": []})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
