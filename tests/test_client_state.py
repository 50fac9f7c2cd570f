"""The OT client (ClientState) against a simulated server built on LiveDocument.

No sockets: each client has a FIFO queue of messages to the server and one from it, and the tests
(or hypothesis) choose which message is delivered next.
"""

from __future__ import annotations

from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notes.client import ClientState
from notes.collab.delta import DeltaError, transform_index
from notes.collab.document import EditRejected, LiveDocument, StaleRevision


class Server:
    """The message handling of the real server, reduced to what the OT client sees."""

    def __init__(self, doc: LiveDocument) -> None:
        self.doc = doc
        self.outboxes: dict[int, deque[dict]] = {}
        self.errors: list[dict] = []

    def connect(self, cid: int, since: int | None = None, epoch: str | None = None) -> None:
        hello = {"type": "hello", "client": f"c{cid}", "epoch": self.doc.epoch,
                 "rev": self.doc.rev, "content": self.doc.text, "title": "", "peers": []}
        revisions = (self.doc.revisions_since(since)
                     if since is not None and epoch == self.doc.epoch else None)
        if revisions is not None:
            hello["since"] = since
            hello["missed"] = [{"rev": r.rev, "delta": r.delta, "client": r.client, "ref": r.ref}
                               for r in revisions]
        self.outboxes[cid] = deque([hello])

    def disconnect(self, cid: int) -> None:
        self.outboxes.pop(cid, None)

    def receive(self, cid: int, msg: dict) -> None:
        ref = msg.get("ref")
        try:
            revision, duplicate = self.doc.apply_edit(msg["rev"], msg["delta"], client=f"c{cid}",
                                                      ref=ref)
        except StaleRevision:
            self.send(cid, {"type": "resync", "rev": self.doc.rev, "content": self.doc.text,
                            "ref": ref})
            return
        except EditRejected as rejected:
            error = {"type": "error", "code": rejected.code, "message": rejected.message,
                     "ref": ref}
            self.errors.append(error)
            self.send(cid, error)
            return
        self.send(cid, {"type": "ack", "rev": revision.rev, "ref": ref})
        if duplicate:
            return
        for other in self.outboxes:
            if other != cid:
                self.send(other, {"type": "edit", "rev": revision.rev, "delta": revision.delta,
                                  "client": f"c{cid}"})

    def send(self, cid: int, msg: dict) -> None:
        if cid in self.outboxes:
            self.outboxes[cid].append(msg)


class Peer:
    """One client: its state and the messages it has sent that the server has not read yet."""

    def __init__(self, cid: int, server: Server) -> None:
        self.cid = cid
        self.server = server
        self.state = ClientState()
        self.to_server: deque[dict] = deque()
        self.connected = False
        server.connect(cid)

    @property
    def from_server(self) -> deque[dict]:
        return self.server.outboxes[self.cid]

    def send(self, msg: dict | None) -> None:
        if msg is not None and self.connected:  # like LiveClient: nothing goes out while down
            self.to_server.append(msg)

    def edit(self, msg: dict | None) -> None:
        self.send(msg)

    def deliver_to_server(self) -> bool:
        if not self.to_server:
            return False
        self.server.receive(self.cid, self.to_server.popleft())
        return True

    def deliver_from_server(self) -> bool:
        if not self.from_server:
            return False
        msg = self.from_server.popleft()
        kind = msg["type"]
        if kind == "hello":
            self.connected = True
            for message in self.state.on_hello(msg):
                self.send(message)
        elif kind == "ack":
            self.send(self.state.on_ack(msg))
        elif kind == "edit":
            self.state.on_remote_edit(msg)
        elif kind == "resync":
            self.send(self.state.on_resync(msg))
        elif kind == "error":
            self.send(self.state.on_error(msg))
        return True

    def drop(self) -> None:
        """Lose the connection with whatever was in flight both ways, then reconnect."""
        self.to_server.clear()
        self.connected = False
        self.server.disconnect(self.cid)
        self.server.connect(self.cid, since=self.state.rev, epoch=self.state.epoch)


def drain(peers: list[Peer]) -> None:
    while any(p.deliver_to_server() | p.deliver_from_server() for p in peers):
        pass


def assert_converged(server: Server, peers: list[Peer]) -> None:
    doc = server.doc
    assert str(doc.ytext) == doc.text
    for peer in peers:
        state = peer.state
        assert (state.text, state.server_text, state.rev) == (doc.text, doc.text, doc.rev)
        assert state.awaiting is None and state.buffer is None


def connected_peers(server: Server, count: int) -> list[Peer]:
    peers = [Peer(i, server) for i in range(count)]
    drain(peers)
    return peers


# --- random interleavings ---------------------------------------------------------------------

ALPHABET = "aé漢😀𝄞\n"


@st.composite
def local_edit(draw: st.DrawFn, text: str) -> tuple[str, int, object]:
    if text and draw(st.booleans()):
        index = draw(st.integers(0, len(text) - 1))
        return "delete", index, draw(st.integers(1, min(4, len(text) - index)))
    index = draw(st.integers(0, len(text)))
    return "insert", index, draw(st.text(alphabet=ALPHABET, min_size=1, max_size=3))


def run_random_session(data: st.DataObject, *, history_limit: int, headroom: int,
                       drops: bool) -> None:
    """Random local edits, deliveries (and lost connections), then everything delivered."""
    initial = data.draw(st.text(alphabet=ALPHABET, max_size=12), label="initial")
    server = Server(LiveDocument(content=initial, history_limit=history_limit,
                                 max_length=len(initial) + headroom))
    peers = connected_peers(server, data.draw(st.integers(2, 4), label="clients"))
    actions = ["edit", "edit", "to_server", "from_server", "from_server"] + (["drop"] if drops
                                                                            else [])
    for _ in range(data.draw(st.integers(5, 60), label="steps")):
        peer = data.draw(st.sampled_from(peers))
        action = data.draw(st.sampled_from(actions))
        if action == "edit":
            kind, index, arg = data.draw(local_edit(peer.state.text))
            peer.edit(getattr(peer.state, kind)(index, arg))
        elif action == "to_server":
            peer.deliver_to_server()
        elif action == "from_server":
            peer.deliver_from_server()
        else:
            peer.drop()
    drain(peers)
    assert_converged(server, peers)
    assert {error["code"] for error in server.errors} <= {"too_large"}


@settings(max_examples=120, deadline=None)
@given(st.data())
def test_random_interleavings_converge(data: st.DataObject) -> None:
    run_random_session(data, history_limit=1000, headroom=1000, drops=False)


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_random_interleavings_with_dropped_connections_converge(data: st.DataObject) -> None:
    run_random_session(data, history_limit=1000, headroom=1000, drops=True)


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_random_interleavings_with_resyncs_and_rejections_converge(data: st.DataObject) -> None:
    run_random_session(data, history_limit=2, headroom=6, drops=False)


# --- the client on its own --------------------------------------------------------------------


def started(content: str = "héllo 漢字", rev: int = 3) -> ClientState:
    state = ClientState(session="s")
    state.on_hello({"type": "hello", "client": "me", "rev": rev, "content": content})
    return state


def test_first_edit_is_sent_then_buffered() -> None:
    state = started()
    assert state.insert(6, "😀") == {"type": "edit", "rev": 3, "ref": "s:1",
                                     "delta": [{"retain": 6}, {"insert": "😀"}]}
    assert state.delete(0, 1) is None
    assert state.insert(0, "é") is None
    assert state.text == "ééllo 😀漢字"
    assert state.buffer == [{"insert": "é"}, {"delete": 1}]
    assert state.on_ack({"type": "ack", "rev": 4, "ref": "s:1"}) == {
        "type": "edit", "rev": 4, "ref": "s:2", "delta": [{"insert": "é"}, {"delete": 1}]}
    assert state.server_text == "héllo 😀漢字"


def test_empty_edits_are_not_sent() -> None:
    state = started()
    assert state.local_edit([]) is None
    assert state.insert(2, "") is None
    assert state.insert(0, "") is None
    assert state.delete(3, 0) is None
    assert state.awaiting is None


def test_local_edit_that_does_not_fit_changes_nothing() -> None:
    state = started()
    with pytest.raises(DeltaError):
        state.local_edit([{"retain": 9}])
    with pytest.raises(DeltaError):
        state.delete(7, 2)
    with pytest.raises(DeltaError):
        state.insert(-1, "é")
    assert state.text == "héllo 漢字" and state.awaiting is None


def test_edit_before_hello_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        ClientState().insert(0, "é")


def test_unrelated_ack_is_ignored() -> None:
    state = started()
    state.insert(0, "😀")
    assert state.on_ack({"type": "ack", "rev": 4, "ref": "other:1"}) is None
    assert state.awaiting is not None and state.rev == 3


def test_remote_edit_moves_pending_edits_and_carets() -> None:
    state = started("漢字")
    state.insert(1, "😀")  # awaiting
    state.insert(3, "é")  # buffered
    caret = 3
    applied = state.on_remote_edit(
        {"type": "edit", "rev": 4, "delta": [{"insert": "ab"}], "client": "x"})
    caret = transform_index(caret, applied)
    assert state.text == "ab漢😀字é"
    assert caret == 5
    assert state.awaiting == ("s:1", [{"retain": 3}, {"insert": "😀"}])
    assert state.buffer == [{"retain": 5}, {"insert": "é"}]
    assert state.server_text == "ab漢字"


def test_remote_insert_at_same_position_goes_first() -> None:
    state = started("éé")
    state.insert(1, "😀")
    state.on_remote_edit({"type": "edit", "rev": 4, "delta": [{"retain": 1}, {"insert": "漢"}]})
    assert state.text == "é漢😀é"


def test_error_for_the_awaiting_edit_undoes_it_and_sends_the_buffer() -> None:
    state = started("漢字")
    state.insert(2, "😀😀")  # awaiting, will be rejected
    state.insert(0, "é")  # buffered
    state.delete(4, 1)  # buffered: removes one of the rejected 😀
    message = state.on_error({"type": "error", "code": "too_large", "message": "", "ref": "s:1"})
    assert state.text == "é漢字"
    assert message == {"type": "edit", "rev": 3, "ref": "s:2", "delta": [{"insert": "é"}]}
    assert state.on_error({"type": "error", "code": "bad_json", "ref": None}) is None


# --- scripted server scenarios ----------------------------------------------------------------


def test_two_clients_typing_at_once() -> None:
    server = Server(LiveDocument(content="漢字"))
    a, b = connected_peers(server, 2)
    a.edit(a.state.insert(1, "😀"))
    b.edit(b.state.insert(1, "é"))
    b.edit(b.state.insert(2, "é"))
    a.deliver_to_server()
    b.deliver_to_server()
    drain([a, b])
    assert server.doc.text == "漢😀éé字"
    assert_converged(server, [a, b])


def test_resync_rebases_the_pending_edits() -> None:
    server = Server(LiveDocument(content="héllo", history_limit=1))
    a, b = connected_peers(server, 2)
    a.edit(a.state.insert(5, " 😀"))
    a.edit(a.state.insert(0, "¡"))
    for char in "漢字":
        b.edit(b.state.insert(0, char))
        b.deliver_to_server()
        b.deliver_from_server()
    a.deliver_to_server()  # based on revision 0, older than the history: resync
    assert server.doc.rev == 2
    assert [m["type"] for m in a.from_server] == ["edit", "edit", "resync"]
    drain([a, b])
    assert server.doc.text == "字漢¡héllo 😀"  # the server's text goes first at ties
    assert_converged(server, [a, b])


def test_resync_for_a_presence_message_is_ignored() -> None:
    state = started()
    state.insert(0, "é")
    assert state.on_resync({"type": "resync", "rev": 3, "content": "x", "ref": None}) is None
    assert state.text == "éhéllo 漢字"


def test_reconnect_when_the_ack_was_lost() -> None:
    server = Server(LiveDocument(content="漢字"))
    a, b = connected_peers(server, 2)
    a.edit(a.state.insert(2, "😀"))
    a.deliver_to_server()  # applied as revision 1; the ack waits in a's queue
    b.edit(b.state.insert(0, "é"))
    b.deliver_to_server()
    a.drop()  # the ack and b's edit are lost with the connection
    a.edit(a.state.insert(0, "字"))  # typed while disconnected: buffered, nothing sent
    assert not a.to_server
    hello = a.from_server[0]
    assert [m["ref"] for m in hello["missed"]] == [f"{a.state.session}:1", b.state.awaiting[0]]
    drain([a, b])
    assert server.doc.text == "é字漢字😀"
    assert server.doc.text.count("😀") == 1
    assert_converged(server, [a, b])


def test_reconnect_resends_an_edit_that_never_arrived() -> None:
    server = Server(LiveDocument(content="漢字"))
    a, b = connected_peers(server, 2)
    a.edit(a.state.insert(2, "😀"))
    b.edit(b.state.delete(0, 1))
    b.deliver_to_server()
    a.drop()  # a's edit is lost in flight
    assert server.doc.rev == 1
    drain([a, b])
    assert server.doc.text == "字😀"
    assert_converged(server, [a, b])


def test_reconnect_without_missed_rebases_by_diff() -> None:
    server = Server(LiveDocument(content="héllo", history_limit=1))
    a, b = connected_peers(server, 2)
    a.edit(a.state.insert(5, "!"))
    for char in "漢字":
        b.edit(b.state.insert(0, char))
        b.deliver_to_server()
        b.deliver_from_server()
    a.drop()  # a's edit and b's revisions are lost in flight
    assert "missed" not in a.from_server[0]
    drain([a, b])
    assert server.doc.text == "字漢héllo!"
    assert_converged(server, [a, b])


def test_reconnect_after_a_restart_does_not_apply_the_awaiting_edit_twice() -> None:
    server = Server(LiveDocument(content="漢字"))
    (a,) = connected_peers(server, 1)
    a.edit(a.state.insert(2, "😀"))
    a.deliver_to_server()  # applied; the server then restarts and the ack is lost
    a.edit(a.state.insert(0, "é"))
    doc = server.doc
    # The restarted server (or another process) loads the stored state and the stored refs.
    server.doc = LiveDocument(state=doc.encode_state(), rev=doc.rev)
    server.doc.remember_refs([r.ref for r in doc.recent_revisions(10) if r.ref])
    a.drop()
    assert "missed" not in a.from_server[0]
    drain([a])
    assert server.doc.text == "é漢字😀"
    assert_converged(server, [a])


def test_reconnect_to_another_numbering_with_the_same_rev_rebases() -> None:
    # Another process's document happens to stand at the client's revision, with other text:
    # its `since` is not taken for that process's (no `missed`); the client rebases.
    server = Server(LiveDocument(content="héllo"))
    (a,) = connected_peers(server, 1)
    a.edit(a.state.insert(5, "!"))
    a.deliver_to_server()
    a.deliver_from_server()
    a.edit(a.state.insert(0, "é"))
    other = LiveDocument(content="héllo!")
    other.apply_edit(0, [{"insert": "漢"}])
    assert other.rev == a.state.rev
    other.remember_refs([r.ref for r in server.doc.recent_revisions(10) if r.ref])
    server.doc = other
    a.drop()
    assert "missed" not in a.from_server[0]
    drain([a])
    assert server.doc.text == "漢éhéllo!"  # the server's insert goes first at one position
    assert_converged(server, [a])


def test_duplicate_resend_is_acknowledged_once() -> None:
    server = Server(LiveDocument(content="漢字"))
    (a,) = connected_peers(server, 1)
    message = a.state.insert(0, "😀")
    a.edit(message)
    a.deliver_to_server()
    server.receive(a.cid, message)  # the same frame again, say from a retry
    assert server.doc.text == "😀漢字"
    assert [m["rev"] for m in a.from_server] == [1, 1]
    drain([a])
    assert_converged(server, [a])
