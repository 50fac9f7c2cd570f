"""Many processes, one database: SIGKILL and restart mid-typing, two instances side by side, and
``notes serve --workers 2``. Real server processes on real ports, the real PostgreSQL, real
npm Yjs clients under node, JSON clients and REST writers, all typing at once.

Characters are counted: every JSON client, Yjs client and REST writer types characters nobody
else types (``Fresh``) and nothing is deleted where counting matters, so a lost edit shows as a
missing character and an edit applied twice as a doubled one.

The typing loops pause a few milliseconds between keystrokes: that paces the typing (so that it
is still going on when a server dies); every wait for an outcome is a condition with a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterable

import httpx
import pytest
from conftest import ServerProcess, wait_for
from live_helpers import (
    Fresh,
    RecordingClient,
    close_all,
    create_note,
    type_randomly,
    wait_converged,
    yjs_text,
)
from sqlalchemy import text as sql
from yjs_node import NodeYjsClient, yjs_clients

# No debounced save fires within these tests: what was acknowledged before a SIGKILL can only
# have been kept by the update log.
LAZY = {"NOTES_SAVE_DEBOUNCE": "60", "NOTES_SAVE_MAX_WAIT": "120"}
PACE = 0.01  # seconds between one typist's keystrokes


class AckedClient(RecordingClient):
    """A recording LiveClient that also collects the characters of its own acknowledged edits.

    An ``ack`` (also a duplicate one, for an edit resent after a reconnect that the server had
    stored before) is only sent once the edit is committed to the update log
    (NOTES_DURABILITY=log): these characters must survive anything.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.acked: set[str] = set()
        self.duplicate_acks = 0
        state = self.state
        on_ack = state.on_ack

        def record_ack(msg: dict) -> dict | None:
            awaiting = state.awaiting
            if awaiting is not None and msg.get("ref") == awaiting[0]:
                self.acked.update(inserted(awaiting[1]))
                if state.rev is not None and msg["rev"] <= state.rev:
                    self.duplicate_acks += 1
            return on_ack(msg)

        state.on_ack = record_ack  # type: ignore[method-assign]

    def acks(self) -> int:
        return len(self.of_type("ack"))


def acked_past(clients: list[AckedClient], before: list[int], more: int) -> Callable[[], bool]:
    """A condition: every client is connected and has ``more`` acks beyond ``before``."""
    return lambda: all(c.connected and c.acks() >= n + more
                       for c, n in zip(clients, before, strict=True))


async def typed_more(clients: list[AckedClient], typists: Typists, yjs_typed: list[str]) -> None:
    """Wait until every JSON client has 10 more acks, REST 4 more answered edits and the Yjs
    client 10 more characters typed."""
    acked = acked_past(clients, [c.acks() for c in clients], 10)
    answered, typed = len(typists.rest_answered) + 4, len(yjs_typed) + 10
    await wait_for(lambda: acked() and len(typists.rest_answered) >= answered
                   and len(yjs_typed) >= typed,
                   timeout=20, message="typing on the server about to be killed")


def inserted(delta: Iterable[dict]) -> str:
    return "".join(op.get("insert", "") for op in delta)


def yurl(server: ServerProcess) -> str:
    return server.ws_url + "/yjs"


async def start_server(database_url: str, name: str, env: dict[str, str] | None = None,
                       args: list[str] | None = None) -> ServerProcess:
    process = ServerProcess(database_url, env, log_name=name, args=args)
    return await asyncio.to_thread(process.start)


async def stop_server(process: ServerProcess, sig: int = signal.SIGTERM) -> int:
    return await asyncio.to_thread(process.stop, sig)


async def sigkill(process: ServerProcess) -> None:
    """SIGKILL, and wait until the process is gone (no flush, no goodbye to anyone)."""
    assert process.process is not None
    process.process.send_signal(signal.SIGKILL)
    code = await stop_server(process, signal.SIGKILL)
    assert code == -signal.SIGKILL, code


async def get_note(base_url: str, note_id: str) -> dict:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        response = await http.get(f"/notes/{note_id}")
        assert response.status_code == 200, response.text
        return response.json()


async def log_rows(db, note_id: str) -> int:
    async with db.engine.connect() as connection:
        result = await connection.execute(
            sql("SELECT count(*) FROM note_updates WHERE note_id = :id"), {"id": note_id})
        return result.scalar_one()


async def move_yjs(node: NodeYjsClient, server: ServerProcess, note_id: str) -> None:
    """Point a node Yjs client at another server: a new provider on the same ``Y.Doc``, which
    syncs both ways (what the server lacks of the doc goes up, what the doc lacks comes down)."""
    await node.destroy()
    await node.connect(yurl(server), note_id)
    await node.wait_synced(15)


class Typists:
    """JSON clients, node Yjs clients and a REST writer typing fresh characters until stopped."""

    def __init__(self, note_id: str, rest_url: str | None, seed: int):
        self.note_id = note_id
        self.rest_url = rest_url  # change it to send the next REST edits elsewhere
        self.rng = random.Random(seed)
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task] = []
        self.yjs_typed: dict[str, list[str]] = {}
        self.rest_answered: list[str] = []  # characters of REST edits answered 200
        self.rest_unsure: list[str] = []  # sent, but no answer came (the server died)
        self.rest_refused: list[str] = []  # answered 409/422: not applied

    def json(self, client: AckedClient, fresh: Fresh) -> None:
        rng = random.Random(self.rng.random())

        async def run() -> None:
            while not self.stop.is_set():
                await type_randomly(client, rng, 1, deletes=False, chars=fresh)
                await asyncio.sleep(PACE)

        self.tasks.append(asyncio.create_task(run()))

    def yjs(self, node: NodeYjsClient, fresh: Fresh) -> None:
        typed = self.yjs_typed.setdefault(node.name, [])

        async def run() -> None:
            # At index 0: always a code point boundary, whatever arrives meanwhile.
            while not self.stop.is_set():
                char = next(fresh)
                await node.insert(0, char)
                typed.append(char)
                await asyncio.sleep(PACE)

        self.tasks.append(asyncio.create_task(run()))

    def rest(self, fresh: Fresh) -> None:
        async def run() -> None:
            async with httpx.AsyncClient(timeout=5) as http:
                while not self.stop.is_set():
                    url = f"{self.rest_url}/notes/{self.note_id}"
                    try:
                        note = (await http.get(url)).json()
                    except (httpx.HTTPError, ValueError):
                        await asyncio.sleep(0.05)  # no server here (yet): try again
                        continue
                    chars = next(fresh) + next(fresh)
                    edit = {"rev": note["rev"], "epoch": note["epoch"],
                            "delta": [{"insert": chars}]}
                    try:
                        response = await http.post(url + "/edits", json=edit)
                    except httpx.HTTPError:
                        self.rest_unsure.extend(chars)
                        continue
                    if response.status_code == 200:
                        self.rest_answered.extend(chars)
                    elif response.status_code == 503:  # stopping, or its store too slow
                        self.rest_unsure.extend(chars)
                    else:
                        assert response.status_code in (409, 422), response.text
                        self.rest_refused.extend(chars)
                    await asyncio.sleep(PACE * 3)

        self.tasks.append(asyncio.create_task(run()))

    async def finish(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks)
        self.tasks.clear()

    async def cancel(self) -> None:
        self.stop.set()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def assert_no_char_doubled(text: str, where: str) -> None:
    doubled = {char: n for char, n in Counter(text).items() if n > 1}
    assert not doubled, f"{where}: characters doubled: {doubled}"


def assert_once(text: str, chars: Iterable[str], what: str) -> None:
    counts = Counter(text)
    chars = list(chars)
    missing = [c for c in chars if counts[c] == 0]
    doubled = {c: counts[c] for c in chars if counts[c] > 1}
    assert not missing and not doubled, (
        f"{what}: {len(missing)} of {len(chars)} missing {missing[:10]}, doubled {doubled}")


async def wait_all_same(json_clients: list[AckedClient], nodes: list[NodeYjsClient],
                        timeout: float = 30.0) -> str:
    """Wait until every JSON client (on any process) has everything acknowledged and they and
    the Yjs clients hold one text; that text. (Revision numbers differ between processes.)"""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        texts = {c.text for c in json_clients}
        settled = all(c.connected and c.state.awaiting is None and c.state.buffer is None
                      for c in json_clients)
        if settled and len(texts) == 1:
            (text,) = texts
            contents = [await node.content() for node in nodes]
            if all(content == text for content in contents):
                return text
        if asyncio.get_running_loop().time() > deadline:
            summary = [(c.name, c.connected, c.state.awaiting is not None,
                        c.state.buffer is not None, len(c.text)) for c in json_clients]
            lengths = [len(await node.content()) for node in nodes]
            raise AssertionError(f"not converged within {timeout}s: {summary}, yjs {lengths}")
        await asyncio.sleep(0.02)


# --- SIGKILL mid-typing ------------------------------------------------------------------------


KILL_ROUNDS = 10


async def test_sigkill_mid_typing_loses_no_acknowledged_edit_and_doubles_none(database_url, db):
    """KILL_ROUNDS rounds of: three JSON clients, one node Yjs client and a REST writer type fresh
    characters; the server is SIGKILLed while they type (and they go on typing); a new server
    starts on the same database; everyone moves to it.

    Asserted each round: the kill came before any save (the snapshot lacks characters that were
    acknowledged, and the log has rows), so only the log can keep them; on the restarted server,
    before anyone else reconnects, GET answers a text that holds every character acknowledged
    so far (JSON acks, REST 200 answers), none twice, and a new JSON client is greeted with
    that same text.

    At the end, after everyone re-synced: every character a JSON client typed is there exactly
    once (acknowledged or not: the client keeps and resends what was not acknowledged, and the
    server recognises resent edits it had stored by their refs); every character the Yjs client
    typed is there exactly once (y-websocket has no acks; its doc keeps everything and the sync
    with the new server uploads what the server lacks); every REST edit answered 200 is there
    once, one without an answer at most once, one refused not at all; nothing else is. GET and
    the Yjs client agree with the JSON clients, and after a clean stop the stored row (content
    and Yjs state) holds exactly that text.
    """
    servers: list[ServerProcess] = []
    clients: list[AckedClient] = []
    typists: Typists | None = None
    try:
        servers.append(await start_server(database_url, "kill-1", LAZY))
        async with httpx.AsyncClient(base_url=servers[0].url) as http:
            note_id = await create_note(http, content="")
        clients = [await AckedClient.connect(servers[0].url, note_id, name=f"json{i}")
                   for i in range(3)]
        fresh = [Fresh(i) for i in range(len(clients))]
        async with yjs_clients() as new_client:
            node = await new_client("js")
            await node.connect(yurl(servers[0]), note_id)
            await node.wait_synced()
            yjs_fresh, rest_fresh = Fresh(3), Fresh(4)

            typists = Typists(note_id, servers[0].url, seed=9)
            for client, chars in zip(clients, fresh, strict=True):
                typists.json(client, chars)
            typists.yjs(node, yjs_fresh)
            typists.rest(rest_fresh)

            for round_ in range(KILL_ROUNDS):
                running = servers[-1]
                await typed_more(clients, typists, yjs_fresh.used)
                # What the server has acknowledged (no await until the kill: nothing more can
                # be acknowledged in between)...
                acked = set().union(*(c.acked for c in clients), typists.rest_answered)
                await sigkill(running)  # ...while everyone goes on typing
                row = await db.row(note_id)
                assert acked - set(row.content), "the snapshot lacks acked edits (no save ran)"
                assert await log_rows(db, note_id) > 0

                restarted = await start_server(database_url, f"kill-{round_ + 2}", LAZY)
                servers.append(restarted)
                # The log brought back everything acknowledged, once, before anyone resent it:
                # GET (the note not open: the snapshot merged with the log) and a new client.
                stored = (await get_note(restarted.url, note_id))["content"]
                assert_once(stored, sorted(acked), f"round {round_}: acked, after the restart")
                assert_no_char_doubled(stored, f"round {round_}: after the restart")
                observer = await AckedClient.connect(restarted.url, note_id, name="observer",
                                                     reconnect=False)
                assert observer.hellos[0]["content"] == stored
                assert observer.hellos[0]["epoch"] not in {h["epoch"] for c in clients
                                                           for h in c.hellos}
                await observer.close()

                for client in clients:
                    client.base_url = restarted.url  # the next reconnect attempt goes there
                typists.rest_url = restarted.url
                await move_yjs(node, restarted, note_id)
                await wait_for(acked_past(clients, [c.acks() for c in clients], 3),
                               timeout=20, message="the clients typing on the new server")

            await typists.finish()
            text = await wait_converged(clients, timeout=30)
            await node.wait_content(text, timeout=20)

            for i, client in enumerate(clients):
                assert client.acked <= set(text), f"json{i}: acknowledged characters lost"
            assert_once(text, typists.rest_answered, "REST edits answered 200")
            for char in typists.rest_unsure:
                assert text.count(char) <= 1, f"an unanswered REST edit applied twice: {char}"
            assert not set(typists.rest_refused) & set(text), "a refused REST edit applied"
            assert_once(text, yjs_fresh.used, "the Yjs client's characters")
            for i, chars in enumerate(fresh):
                assert_once(text, chars.used, f"json{i}: its typed characters")
            typed = {*yjs_fresh.used, *typists.rest_answered, *typists.rest_unsure,
                     *(char for chars in fresh for char in chars.used)}
            assert set(text) <= typed
            assert_no_char_doubled(text, "the converged text")
            # Each client moved to a new process numbering each round, and got no `missed`.
            for client in clients:
                assert len({h["epoch"] for h in client.hellos}) >= 4
                assert all("missed" not in h for h in client.hellos[1:])

            note = await get_note(servers[-1].url, note_id)
            assert note["content"] == text
            assert not node.problems, node.problems

        final = servers[-1]
        assert await stop_server(final) == 0, final.log()[-3000:]
        row = await db.row(note_id)
        assert row.content == text
        assert yjs_text(row.yjs_state) == text
    finally:
        if typists is not None:
            await typists.cancel()
        await close_all(clients)
        for process in servers:
            await stop_server(process, signal.SIGKILL)


@pytest.mark.parametrize("yjs_peer", [False, True], ids=["json-peer", "json-and-yjs-peers"])
async def test_an_unacknowledged_edit_others_saw_is_there_once_after_a_sigkill(
        database_url, db, yjs_peer):
    """The moment a SIGKILL can hit: a JSON client's edit is applied, but its log commit has not
    finished (here: held back by a lock on the log table that the test takes), so there is no
    ack, and nobody else has heard of it either (a Yjs peer that had would upload its items
    again after the crash, besides the author's resend: twice). The server dies; a new one
    starts. The JSON author resends the edit (same ref) to the new server. Asserted: until the
    commit nobody else sees the edit, and afterwards its text is there exactly once for
    everyone (not lost, not applied twice)."""
    servers: list[ServerProcess] = []
    clients: list[AckedClient] = []
    lock = None
    try:
        servers.append(await start_server(database_url, "unacked-1", LAZY))
        async with httpx.AsyncClient(base_url=servers[0].url) as http:
            note_id = await create_note(http, content="base")
        clients = [await AckedClient.connect(servers[0].url, note_id, name=name)
                   for name in ("author", "peer")]
        author, peer = clients
        async with yjs_clients() as new_client:
            nodes = [await new_client("js")] if yjs_peer else []
            for node in nodes:
                await node.connect(yurl(servers[0]), note_id)
                await node.wait_synced()

            lock = await db.engine.connect()
            await lock.begin()
            await lock.execute(sql("LOCK TABLE note_updates IN SHARE MODE"))  # no INSERT now
            await author.insert(4, " unacked")
            # The journal's INSERT now waits for the lock: the edit was applied on the server.
            waiting = sql("SELECT count(*) FROM pg_locks"
                          " WHERE relation = 'note_updates'::regclass AND NOT granted")
            deadline = time.monotonic() + 10
            async with db.engine.connect() as probe:
                while not (await probe.execute(waiting)).scalar_one():
                    assert time.monotonic() < deadline, "the log's INSERT never waited"
                    await asyncio.sleep(0.02)
            # Nothing about it reaches anyone before its commit (a bounded look: an absence).
            with contextlib.suppress(TimeoutError):
                await peer.wait_for(lambda: peer.text != "base", timeout=0.3)
            assert peer.text == "base"
            for node in nodes:
                assert await node.content() == "base"
            assert author.state.awaiting is not None and not author.acked, "no commit, no ack"
            await sigkill(servers[0])
            await lock.rollback()
            await lock.close()
            lock = None

            restarted = await start_server(database_url, "unacked-2", LAZY)
            servers.append(restarted)
            assert (await get_note(restarted.url, note_id))["content"] == "base"
            for client in clients:
                client.base_url = restarted.url
            for node in nodes:
                await move_yjs(node, restarted, note_id)
            text = await wait_all_same(clients, nodes, timeout=20)
            assert text == "base unacked", text
    finally:
        if lock is not None:
            await lock.close()
        await close_all(clients)
        for process in servers:
            await stop_server(process, signal.SIGKILL)


# --- two instances on one database --------------------------------------------------------------


async def two_instances_on_one_note(
        database_url: str, names: tuple[str, str], content: str, servers: list[ServerProcess],
        clients: list[AckedClient], new_client) -> tuple[str, list[AckedClient],
                                                         list[AckedClient], list[NodeYjsClient]]:
    """Two instances on one database (appended to ``servers`` as they start, for the caller's
    cleanup), a note, and on each instance two JSON clients (appended to ``clients``) and a node
    Yjs client, synced: (note id, A's JSON clients, B's, the Yjs clients [on A, on B])."""
    servers.extend(await asyncio.gather(*(start_server(database_url, name) for name in names)))
    a, b = servers
    async with httpx.AsyncClient(base_url=a.url) as http:
        note_id = await create_note(http, title=names[0], content=content)
    on_a = [await AckedClient.connect(a.url, note_id, name=f"a{i}") for i in range(2)]
    clients.extend(on_a)
    on_b = [await AckedClient.connect(b.url, note_id, name=f"b{i}") for i in range(2)]
    clients.extend(on_b)
    nodes = [await new_client("ya"), await new_client("yb")]
    for node, server in zip(nodes, servers, strict=True):
        await node.connect(yurl(server), note_id)
        await node.wait_synced()
    return note_id, on_a, on_b, nodes


async def test_two_instances_converge_and_survive_one_being_killed(database_url, db):
    """Two servers on one database, each with two JSON clients and one node Yjs client.

    First everyone types at random (inserts and deletes) at once: all converge on one text,
    GET on either instance answers it, and the stored row comes to hold it. A REST PATCH on
    one instance and a PUT (with a title) on the other reach every client on both.

    Then everyone types fresh characters (no deletes) and one instance is SIGKILLed meanwhile;
    its JSON clients move to the other instance (base_url), its Yjs client re-syncs there.
    Asserted: every character typed in that phase (JSON and Yjs) is there exactly once, the
    acknowledged ones among them included, and taking them out leaves exactly the text from
    before the phase: nothing lost, nothing doubled. GET and the stored row agree.
    """
    servers: list[ServerProcess] = []
    clients: list[AckedClient] = []
    typists: Typists | None = None
    try:
        async with yjs_clients() as new_client:
            note_id, on_a, on_b, nodes = await two_instances_on_one_note(
                database_url, ("two-a", "two-b"), "shared 😀\n", servers, clients, new_client)
            a, b = servers
            node_a, node_b = nodes

            # Phase 1: random typing everywhere at once.
            await asyncio.gather(
                *(type_randomly(c, random.Random(40 + i), 80) for i, c in enumerate(clients)),
                *(node.random_edits(80, seed=50 + i, delay_ms=2) for i, node in enumerate(nodes)),
            )
            text = await wait_all_same(clients, nodes)
            assert len(on_a[0].state.epoch or "") and on_a[0].state.epoch != on_b[0].state.epoch
            for server in (a, b):
                assert (await get_note(server.url, note_id))["content"] == text
            row = await db.wait_row(note_id, lambda r: r.content == text, 15, "the save")
            assert yjs_text(row.yjs_state) == text

            # REST writes on either instance reach everyone on both.
            async with httpx.AsyncClient(base_url=a.url) as http:
                patched = await http.patch(f"/notes/{note_id}",
                                           json={"content": "[patch A]" + text})
                assert patched.status_code == 200, patched.text
            text = await wait_all_same(clients, nodes, timeout=15)
            assert text == patched.json()["content"] and text.startswith("[patch A]")
            async with httpx.AsyncClient(base_url=b.url) as http:
                put = await http.put(f"/notes/{note_id}",
                                     json={"title": "two instances", "content": text + "[put B]"})
                assert put.status_code == 200, put.text
            text = await wait_all_same(clients, nodes, timeout=15)
            assert text == put.json()["content"] and text.endswith("[put B]")
            await wait_for(lambda: all(c.title == "two instances" for c in clients), 10,
                           "the new title on every JSON client")
            for node in nodes:
                assert (await node.text())["title"] == "two instances"
            base = text

            # Phase 2: fresh characters everywhere; B dies while everyone types.
            # (Blocks far from the random phase's alphabet, 漢 included.)
            fresh = [Fresh(10 + i) for i in range(len(clients))]
            yjs_fresh = [Fresh(10 + len(clients) + i) for i in range(len(nodes))]
            typists = Typists(note_id, None, seed=5)
            for client, chars in zip(clients, fresh, strict=True):
                typists.json(client, chars)
            for node, chars in zip(nodes, yjs_fresh, strict=True):
                typists.yjs(node, chars)
            await wait_for(acked_past(clients, [c.acks() for c in clients], 10),
                           timeout=20, message="typing on both instances")
            acked_on_b = set().union(*(c.acked for c in on_b))
            await sigkill(b)
            for client in on_b:
                client.base_url = a.url
            await move_yjs(node_b, a, note_id)
            await wait_for(acked_past(clients, [c.acks() for c in clients], 3),
                           timeout=20, message="B's clients typing on A")
            await typists.finish()
            text = await wait_all_same(clients, nodes)

            assert acked_on_b <= set(text), "edits acknowledged by the killed instance lost"
            for client in clients:
                assert client.acked <= set(text), f"{client.name}: acknowledged edits lost"
            for node, chars in zip(nodes, yjs_fresh, strict=True):
                assert_once(text, chars.used, f"{node.name}: its typed characters")
            for client, chars in zip(clients, fresh, strict=True):
                assert_once(text, chars.used, f"{client.name}: its typed characters")
            typed = {char for chars in fresh + yjs_fresh for char in chars.used}
            assert "".join(char for char in text if char not in typed) == base
            for client in on_b:  # a new process's numbering: a rebase, no `missed`
                assert client.hellos[-1]["epoch"] == on_a[0].state.epoch
                assert "missed" not in client.hellos[-1]

            assert (await get_note(a.url, note_id))["content"] == text
            row = await db.wait_row(note_id, lambda r: r.content == text, 15, "the save")
            assert yjs_text(row.yjs_state) == text and row.title == "two instances"
            assert not any(node.problems for node in nodes), [n.problems for n in nodes]
    finally:
        if typists is not None:
            await typists.cancel()
        await close_all(clients)
        for process in servers:
            await stop_server(process, signal.SIGKILL)


async def test_a_rolling_restart_of_two_instances_loses_nothing(database_url, db):
    """Two instances under load (two JSON clients and a node Yjs client on each, typing fresh
    characters, and a REST writer); restart A with SIGTERM, as a rolling restart does: its
    clients move to B, and A comes back; then the same for B, its clients moving to the new A.

    Asserted: each stop is clean (exit 0); every character typed (JSON and Yjs) is there exactly
    once, every acknowledged one and every REST edit answered 200 among them, a refused one not
    at all; GET and the stored row hold the same text."""
    servers: list[ServerProcess] = []
    clients: list[AckedClient] = []
    typists: Typists | None = None
    try:
        async with yjs_clients() as new_client:
            note_id, on_a, on_b, nodes = await two_instances_on_one_note(
                database_url, ("roll-a", "roll-b"), "", servers, clients, new_client)
            a, b = servers
            node_a, node_b = nodes
            fresh = [Fresh(30 + i) for i in range(len(clients))]
            yjs_fresh = [Fresh(30 + len(clients) + i) for i in range(len(nodes))]
            rest_fresh = Fresh(30 + len(clients) + len(nodes))
            typists = Typists(note_id, b.url, seed=7)
            for client, chars in zip(clients, fresh, strict=True):
                typists.json(client, chars)
            for node, chars in zip(nodes, yjs_fresh, strict=True):
                typists.yjs(node, chars)
            typists.rest(rest_fresh)

            on = {node_a.name: a, node_b.name: b}  # where each Yjs client is
            for going_index, name in ((0, "roll-a2"), (1, "roll-b2")):
                going, staying = servers[going_index], servers[-1]
                await wait_for(acked_past(clients, [c.acks() for c in clients], 5),
                               timeout=20, message="typing on both instances")
                # Everyone on the instance going reconnects to the other after its 1001.
                typists.rest_url = staying.url
                for client in clients:
                    if client.base_url == going.url:
                        client.base_url = staying.url
                assert await stop_server(going) == 0, going.log()[-3000:]
                for node in nodes:
                    if on[node.name] is going:
                        await move_yjs(node, staying, note_id)
                        on[node.name] = staying
                await wait_for(acked_past(clients, [c.acks() for c in clients], 3),
                               timeout=20, message="the moved clients typing on the other")
                servers.append(await start_server(database_url, name))
            await typists.finish()
            text = await wait_all_same(clients, nodes)

            for client in clients:
                assert client.acked <= set(text), f"{client.name}: acknowledged edits lost"
            for client, chars in zip(clients, fresh, strict=True):
                assert_once(text, chars.used, f"{client.name}: its typed characters")
            for node, chars in zip(nodes, yjs_fresh, strict=True):
                assert_once(text, chars.used, f"{node.name}: its typed characters")
            assert_once(text, typists.rest_answered, "REST edits answered 200")
            assert not set(typists.rest_refused) & set(text), "a refused REST edit applied"
            for char in typists.rest_unsure:
                assert text.count(char) <= 1, f"an unanswered REST edit applied twice: {char}"
            assert_no_char_doubled(text, "after the rolling restart")
            assert (await get_note(servers[-1].url, note_id))["content"] == text
            row = await db.wait_row(note_id, lambda r: r.content == text, 15, "the save")
            assert yjs_text(row.yjs_state) == text
            assert not any(node.problems for node in nodes), [n.problems for n in nodes]
    finally:
        if typists is not None:
            await typists.cancel()
        await close_all(clients)
        for process in servers:
            await stop_server(process, signal.SIGKILL)


async def test_get_on_an_instance_without_the_note_open_includes_the_log(database_url, db):
    """Two servers on one database; a JSON client on A types and its edits are acknowledged
    (stored in the update log), no save has run (long debounce). GET on B, which does not have
    the note open, must answer the acknowledged text, as GET on A does: an acknowledged change
    is stored, and REST readers anywhere see what is stored."""
    servers: list[ServerProcess] = []
    client: AckedClient | None = None
    try:
        a, b = await asyncio.gather(start_server(database_url, "get-a", LAZY),
                                    start_server(database_url, "get-b", LAZY))
        servers = [a, b]
        async with httpx.AsyncClient(base_url=a.url) as http:
            note_id = await create_note(http, content="stored ")
        client = await AckedClient.connect(a.url, note_id)
        await client.insert(len(client.text), "and acknowledged")
        await client.synced()
        assert (await db.row(note_id)).content == "stored ", "no save ran yet"
        assert (await get_note(a.url, note_id))["content"] == "stored and acknowledged"
        assert (await get_note(b.url, note_id))["content"] == "stored and acknowledged"
    finally:
        if client is not None:
            await client.close()
        for process in servers:
            await stop_server(process)


# --- notes serve --workers 2 ---------------------------------------------------------------------


async def test_two_workers_share_clients_converge_and_stop_cleanly(database_url, db):
    """``notes serve --workers 2``: /health is answered by two worker processes; eight JSON
    clients land on both (their ``hello`` epochs, one per worker's load of the note, differ),
    type at random at once and converge; GET (any worker) answers the converged text; SIGTERM
    stops everything with exit code 0 and the stored row holds the text."""
    server = await start_server(database_url, "workers", args=["--workers", "2"])
    clients: list[AckedClient] = []
    try:
        pids: set[int] = set()

        async def health_pids() -> bool:
            async with httpx.AsyncClient(base_url=server.url, timeout=5) as http:
                health = (await http.get("/health")).json()
            assert health["status"] == "ok"
            pids.add(health["process"]["pid"])
            return len(pids) >= 2

        deadline = asyncio.get_running_loop().time() + 15
        while not await health_pids():
            assert asyncio.get_running_loop().time() < deadline, f"one worker answers: {pids}"
            await asyncio.sleep(0.02)
        assert server.process is not None and server.process.pid not in pids

        async with httpx.AsyncClient(base_url=server.url) as http:
            note_id = await create_note(http, content="workers é\n")
        clients = [await AckedClient.connect(server.url, note_id, name=f"w{i}")
                   for i in range(8)]
        epochs = Counter(c.state.epoch for c in clients)
        assert len(epochs) == 2, f"the clients did not land on both workers: {epochs}"

        await asyncio.gather(*(type_randomly(c, random.Random(70 + i), 60)
                               for i, c in enumerate(clients)))
        text = await wait_all_same(clients, [])
        for group in ({c for c in clients if c.state.epoch == epoch} for epoch in epochs):
            await wait_converged(list(group), timeout=10)  # one numbering per worker

        async def every_get_answers_the_text() -> bool:
            for _ in range(6):  # a new connection each: either worker may answer
                if (await get_note(server.url, note_id))["content"] != text:
                    return False
            return True

        deadline = asyncio.get_running_loop().time() + 15
        while not await every_get_answers_the_text():
            assert asyncio.get_running_loop().time() < deadline, "GET disagrees with the clients"
            await asyncio.sleep(0.05)

        code = await stop_server(server)
        assert code == 0, server.log()[-3000:]
        row = await db.row(note_id)
        assert row.content == text
        assert yjs_text(row.yjs_state) == text
    finally:
        await close_all(clients)
        await stop_server(server, signal.SIGKILL)
