"""LiveDocument: revisions, transformation past history, rejections, the pycrdt Text mirror."""

from __future__ import annotations

import random
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Text

from notes.collab.delta import apply_delta
from notes.collab.document import (
    BadDelta,
    BadMessage,
    BadUpdate,
    EditRejected,
    FutureRevision,
    LiveDocument,
    Revision,
    SplitsCharacter,
    StaleRevision,
    TooLarge,
    load_client_id,
)
from notes.collab.yupdate import read_update

SAMPLE = "héllo 漢字"


def snapshot(doc: LiveDocument) -> tuple:
    return doc.text, doc.rev, str(doc.ytext), doc.revisions_since(0)


def assert_consistent(doc: LiveDocument) -> None:
    assert str(doc.ytext) == doc.text
    assert len(doc.ytext) == len(doc.text.encode("utf-8"))


def test_new_document() -> None:
    doc = LiveDocument(content="a😀b", rev=7)
    assert doc.text == "a😀b"
    assert doc.rev == 7
    assert len(doc.ytext) == 6
    assert doc.revisions_since(7) == []
    assert doc.revisions_since(6) is None


def test_apply_edit_in_code_points() -> None:
    doc = LiveDocument(content=SAMPLE)
    delta = [{"retain": 6}, {"insert": "😀 "}]
    revision, duplicate = doc.apply_edit(0, delta, client="c1", ref="r")
    assert not duplicate
    assert revision == Revision(1, delta, "c1", "r")
    assert doc.text == "héllo 😀 漢字"
    assert doc.rev == 1
    assert_consistent(doc)
    doc.apply_edit(1, [{"retain": 7}, {"delete": 2}, {"retain": 1}, {"insert": "é"}])
    assert doc.text == "héllo 😀字é"
    assert_consistent(doc)


def test_apply_edit_normalizes_the_delta() -> None:
    doc = LiveDocument(content=SAMPLE)
    revision, _ = doc.apply_edit(0, [{"delete": 1}, {"insert": "H"}, {"retain": 7}])
    assert revision.delta == [{"insert": "H"}, {"delete": 1}]


def test_one_transaction_per_edit() -> None:
    doc = LiveDocument(content=SAMPLE)
    updates: list[bytes] = []
    subscription = doc.doc.observe(lambda event: updates.append(event.update))
    doc.apply_edit(0, [{"insert": "😀"}, {"retain": 2}, {"delete": 2}, {"insert": "漢"}])
    doc.apply_edit(1, [{"retain": 3}, {"insert": "é"}])
    doc.doc.unobserve(subscription)
    assert len(updates) == 2


def test_first_applied_insert_stays_first() -> None:
    doc = LiveDocument(content="éé")
    doc.apply_edit(0, [{"retain": 1}, {"insert": "漢"}], client="a")
    revision, _ = doc.apply_edit(0, [{"retain": 1}, {"insert": "😀"}], client="b")
    assert doc.text == "é漢😀é"
    assert revision.delta == [{"retain": 2}, {"insert": "😀"}]
    assert_consistent(doc)


def test_edit_is_transformed_past_later_revisions() -> None:
    doc = LiveDocument(content=SAMPLE)
    doc.apply_edit(0, [{"insert": "😀😀"}])
    doc.apply_edit(1, [{"retain": 2}, {"delete": 1}])
    revision, _ = doc.apply_edit(0, [{"retain": 6}, {"delete": 2}, {"insert": "字"}])
    assert doc.text == "😀😀éllo 字"
    assert revision.rev == 3
    assert_consistent(doc)


def test_empty_delta_makes_a_revision() -> None:
    doc = LiveDocument(content=SAMPLE)
    revision, duplicate = doc.apply_edit(0, [], ref="noop")
    assert (revision.rev, revision.delta, duplicate) == (1, [], False)
    assert doc.text == SAMPLE


def test_duplicate_ref_returns_the_original_revision() -> None:
    doc = LiveDocument(content=SAMPLE)
    first, _ = doc.apply_edit(0, [{"insert": "😀"}], client="a", ref="s:1")
    doc.apply_edit(1, [{"insert": "漢"}], client="b", ref="t:1")
    before = snapshot(doc)
    again, duplicate = doc.apply_edit(0, [{"insert": "😀"}], client="a", ref="s:1")
    assert duplicate and again == first
    assert snapshot(doc) == before


def test_only_string_refs_are_deduplicated() -> None:
    doc = LiveDocument(content=SAMPLE)
    doc.apply_edit(0, [{"insert": "😀"}], ref=1)
    _, duplicate = doc.apply_edit(0, [{"insert": "😀"}], ref=1)
    assert not duplicate
    assert doc.text == "😀😀" + SAMPLE


def test_a_ref_resent_on_a_later_base_is_a_duplicate() -> None:
    # A client that reconnected rebases its awaiting edit onto the new text and resends it
    # with the same ref: recognised, not applied twice.
    doc = LiveDocument(content=SAMPLE)
    first, _ = doc.apply_edit(0, [{"insert": "é"}], ref="s:1")
    again, duplicate = doc.apply_edit(1, [{"insert": "é"}], ref="s:1")
    assert duplicate and again == first
    assert doc.rev == 1 and doc.text == "é" + SAMPLE


def test_a_ref_stored_elsewhere_is_a_duplicate_at_the_current_revision() -> None:
    doc = LiveDocument(content=SAMPLE)
    doc.apply_edit(0, [{"insert": "漢"}], ref="t:1")
    doc.remember_refs(["s:1"])
    again, duplicate = doc.apply_edit(1, [{"insert": "é"}], ref="s:1")
    assert duplicate and again.rev == 1 and again.delta == []
    assert doc.text == "漢" + SAMPLE


@pytest.mark.parametrize(
    ("base_rev", "delta", "error", "code"),
    [
        (5, [{"insert": "é"}], FutureRevision, "future_rev"),
        (0, [{"insert": "é"}], StaleRevision, "stale"),
        (3, [{"retain": True}], BadDelta, "bad_delta"),
        (3, {"insert": "😀"}, BadDelta, "bad_delta"),
        (3, [{"insert": ""}], BadDelta, "bad_delta"),
        (3, [{"retain": 12}], BadDelta, "bad_delta"),
        (3, [{"retain": 10}, {"delete": 2}], BadDelta, "bad_delta"),
        # Fits the current text (11 code points) but not the text of revision 2 (10).
        (2, [{"retain": 11}], BadDelta, "bad_delta"),
        (3, [{"insert": "漢" * 20}], TooLarge, "too_large"),
    ],
)
def test_rejections_change_nothing(
    base_rev: int, delta: object, error: type[EditRejected], code: str
) -> None:
    doc = LiveDocument(content=SAMPLE, history_limit=2, max_length=20)
    for _ in range(3):
        doc.apply_edit(doc.rev, [{"insert": "😀"}])
    assert (doc.rev, len(doc.text)) == (3, 11)
    before = snapshot(doc), doc.encode_state()
    with pytest.raises(error) as raised:
        doc.apply_edit(base_rev, delta, ref="x:1")
    assert raised.value.code == code
    assert raised.value.message
    assert (snapshot(doc), doc.encode_state()) == before


def test_the_oldest_kept_base_still_works() -> None:
    doc = LiveDocument(content=SAMPLE, history_limit=2)
    for _ in range(3):
        doc.apply_edit(doc.rev, [{"insert": "😀"}])
    doc.apply_edit(1, [{"insert": "漢"}])
    assert doc.text == "😀😀漢😀" + SAMPLE


def test_too_large_allows_shrinking() -> None:
    doc = LiveDocument(content="漢" * 10, max_length=5)
    doc.apply_edit(0, [{"delete": 2}, {"insert": "é"}])
    assert doc.text == "é" + "漢" * 8
    with pytest.raises(TooLarge):
        doc.apply_edit(1, [{"insert": "😀"}])


def test_replace_text() -> None:
    doc = LiveDocument(content="héllo 漢字 😀")
    assert doc.replace_text("héllo 漢字 😀") is None
    revision = doc.replace_text("héllo wörld 漢字 😀", client=None)
    assert revision is not None
    assert revision.delta == [{"retain": 6}, {"insert": "wörld "}]
    assert doc.text == "héllo wörld 漢字 😀"
    assert_consistent(doc)
    # An edit made before the REST write still lands where its author meant it.
    doc.apply_edit(0, [{"retain": 10}, {"insert": "!"}])
    assert doc.text == "héllo wörld 漢字 😀!"
    with pytest.raises(TooLarge):
        LiveDocument(content="é", max_length=3).replace_text("漢字😀é")


def test_revisions_since() -> None:
    doc = LiveDocument(content=SAMPLE, rev=10, history_limit=3)
    for char in "é漢😀字":
        doc.apply_edit(doc.rev, [{"insert": char}], client="c", ref=char)
    assert doc.rev == 14
    assert doc.revisions_since(14) == []
    assert [r.ref for r in doc.revisions_since(12)] == ["😀", "字"]
    assert [r.rev for r in doc.revisions_since(11)] == [12, 13, 14]
    assert doc.revisions_since(10) is None
    with pytest.raises(FutureRevision):
        doc.revisions_since(15)


def test_zero_history_accepts_only_the_current_revision() -> None:
    doc = LiveDocument(content=SAMPLE, history_limit=0)
    doc.apply_edit(0, [{"insert": "é"}])
    with pytest.raises(StaleRevision):
        doc.apply_edit(0, [{"insert": "é"}])
    assert doc.revisions_since(1) == []
    assert doc.revisions_since(0) is None


def test_transform_cursor() -> None:
    doc = LiveDocument(content=SAMPLE)
    doc.apply_edit(0, [{"insert": "😀😀"}])
    doc.apply_edit(1, [{"retain": 8}, {"delete": 2}])
    assert doc.transform_cursor(0, {"index": 1, "length": 2}) == {"index": 3, "length": 2}
    assert doc.transform_cursor(0, {"index": 7, "length": 1}) == {"index": 8, "length": 0}
    assert doc.transform_cursor(2, {"index": 99, "length": 5}) == {"index": 8, "length": 0}
    assert doc.transform_cursor(2, {"index": 6, "length": 50}) == {"index": 6, "length": 2}
    assert doc.transform_cursor(2, None) is None
    with pytest.raises(FutureRevision):
        doc.transform_cursor(3, {"index": 0, "length": 0})


@pytest.mark.parametrize(
    "cursor",
    [5, [], {"index": 1}, {"index": -1, "length": 0}, {"index": 0, "length": True},
     {"index": "1", "length": 0}, {"index": 1.5, "length": 0}],
)
def test_transform_cursor_rejects_malformed(cursor: object) -> None:
    doc = LiveDocument(content=SAMPLE)
    with pytest.raises(BadMessage) as raised:
        doc.transform_cursor(0, cursor)
    assert raised.value.code == "bad_message"


def test_encode_state_round_trip() -> None:
    doc = LiveDocument(content="漢字")
    doc.apply_edit(0, [{"insert": "😀é"}])
    doc.apply_edit(1, [{"retain": 3}, {"delete": 1}])
    loaded = LiveDocument(state=doc.encode_state(), rev=doc.rev)
    assert loaded.text == doc.text == "😀é漢"
    assert loaded.rev == 2
    assert_consistent(loaded)
    loaded.apply_edit(2, [{"retain": 1}, {"insert": "字"}])
    assert loaded.text == "😀字é漢"
    assert_consistent(loaded)
    assert LiveDocument(state=loaded.encode_state()).text == "😀字é漢"


def random_delta(rng: random.Random, length: int) -> list[dict]:
    ops: list[dict] = []
    left = length
    for _ in range(rng.randint(0, 4)):
        kind = rng.choice(["retain", "insert", "delete"] if left else ["insert"])
        if kind == "insert":
            ops.append({"insert": "".join(rng.choices("aé漢😀\n", k=rng.randint(1, 4)))})
        else:
            n = rng.randint(1, min(left, 6))
            ops.append({kind: n})
            left -= n
    return ops


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32), st.text(alphabet="aé漢😀", max_size=20))
def test_random_edits_keep_ytext_and_mirror_equal(seed: int, initial: str) -> None:
    rng = random.Random(seed)
    doc = LiveDocument(content=initial, history_limit=50)
    texts = {0: initial}
    for _ in range(60):
        base = rng.randint(max(0, doc.rev - 10), doc.rev)
        doc.apply_edit(base, random_delta(rng, len(texts[base])), client=f"c{base % 3}")
        texts[doc.rev] = doc.text
        assert str(doc.ytext) == doc.text
    replayed = texts[10]
    for revision in doc.revisions_since(10):
        replayed = apply_delta(replayed, revision.delta)
    assert replayed == doc.text
    assert LiveDocument(state=doc.encode_state()).text == doc.text


def test_a_stored_text_that_differs_from_the_state_wins_and_loading_is_repeatable() -> None:
    """Rows written without Yjs (REST create, an older server) still load the same Yjs items."""
    note_id = uuid.uuid4()
    client_id = load_client_id(note_id)
    fresh = [LiveDocument(content="héllo 😀", title="T", load_client_id=client_id)
             for _ in range(2)]
    assert fresh[0].encode_state() == fresh[1].encode_state()
    assert fresh[0].doc.client_id != client_id  # later edits are not the load id's
    # A Yjs peer that synced with the first load gets nothing new from the second.
    peer = Doc()
    peer.apply_update(fresh[0].encode_state())
    peer.apply_update(fresh[1].encode_state())
    assert str(peer.get("content", type=Text)) == "héllo 😀"
    # With a state whose text is not the row's, the row's text is written over it.
    state = fresh[0].encode_state()
    loaded = LiveDocument(state=state, content="héllo 漢 😀", title="T2",
                          load_client_id=client_id)
    assert (loaded.text, loaded.title) == ("héllo 漢 😀", "T2")
    again = LiveDocument(state=state, content="héllo 漢 😀", title="T2",
                         load_client_id=client_id)
    assert loaded.encode_state() == again.encode_state()
    assert_consistent(loaded)


# --- Yjs updates from clients ------------------------------------------------------------------


class Peer:
    """A pycrdt document standing in for a Yjs client (pycrdt indexes UTF-8 bytes)."""

    def __init__(self, state: bytes):
        self.doc = Doc()
        self.doc.apply_update(state)
        self.text = self.doc.get("content", type=Text)

    def edit(self, rng: random.Random) -> bytes:
        before = self.doc.get_state()
        current = str(self.text)
        if current and rng.random() < 0.35:
            start = rng.randrange(len(current))
            end = min(len(current), start + rng.randint(1, 3))
            offset = len(current[:start].encode())
            del self.text[offset : offset + len(current[start:end].encode())]
        else:
            index = rng.randint(0, len(current))
            self.text.insert(len(current[:index].encode()), rng.choice(["a", "é", "漢", "😀"]))
        return self.doc.get_update(before)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32))
def test_yjs_updates_become_code_point_revisions_that_replay_the_text(seed: int) -> None:
    rng = random.Random(seed)
    doc = LiveDocument(content="héllo 漢字 😀")
    peers = [Peer(doc.encode_state()) for _ in range(2)]
    texts = [doc.text]
    # Each peer's updates arrive in order (one socket each), the peers' interleaved at random.
    queues: list[list[bytes]] = [[], []]

    def deliver(queue: list[bytes]) -> None:
        applied = doc.apply_update(queue.pop(0), client="peer")
        if applied.revision is not None:
            texts.append(apply_delta(texts[-1], applied.revision.delta))
        assert texts[-1] == doc.text
        assert_consistent(doc)

    for _ in range(30):
        i = rng.randrange(2)
        queues[i].append(peers[i].edit(rng))
        j = rng.randrange(2)
        if queues[j] and rng.random() < 0.5:
            deliver(queues[j])
    for queue in queues:
        while queue:
            deliver(queue)
    for peer in peers:
        doc.apply_update(peer.doc.get_update(), client="peer")
        peer.doc.apply_update(doc.encode_state())
    assert {str(peer.text) for peer in peers} == {doc.text}
    assert_consistent(doc)
    # Every revision is in the history, so a JSON client can catch up from the start.
    replayed = "héllo 漢字 😀"
    for revision in doc.revisions_since(0):
        replayed = apply_delta(replayed, revision.delta)
    assert replayed == doc.text


def test_a_refused_update_changes_nothing() -> None:
    doc = LiveDocument(content="a😀b", max_length=10)
    state, rev = doc.encode_state(), doc.rev
    peer = Peer(state)
    for update, error in ((b"\x01\x02\x03", BadUpdate), (b"\x00", BadUpdate)):
        with pytest.raises(error):
            doc.apply_update(update, client="p")
    peer.text.insert(0, "x\x00")
    with pytest.raises(BadUpdate, match="NUL"):
        doc.apply_update(peer.doc.get_update(doc.state_vector()), client="p")
    peer = Peer(state)
    peer.text.insert(0, "0123456789")
    with pytest.raises(TooLarge):
        doc.apply_update(peer.doc.get_update(doc.state_vector()), client="p")
    assert (doc.encode_state(), doc.rev, doc.text) == (state, rev, "a😀b")


# A JavaScript client (npm yjs 13.6) on "a😀b" (one item of client 3061626181, clocks 0-3 in
# UTF-16 units) inserting "x" at UTF-16 index 2, between the halves of the emoji (recorded from a
# real client, tests/yjs/client.mjs); and what deleting the second half sends: no structs, a
# delete set of client 3061626181 from clock 2, length 1.
JS_STATE = bytes.fromhex("0101c5eaf2b30b00040107636f6e74656e740661f09f98806200")
JS_INSERT_INSIDE_PAIR = bytes.fromhex("010189bec65d00c4c5eaf2b30b01c5eaf2b30b02017800")
JS_DELETE_HALF_PAIR = bytes.fromhex("0001c5eaf2b30b010201")


def test_updates_that_split_a_surrogate_pair_are_refused() -> None:
    doc = LiveDocument(state=JS_STATE)
    assert doc.text == "a😀b"
    contents = read_update(JS_INSERT_INSIDE_PAIR)
    assert contents.strings == [((196189961, 0), "x")]
    assert contents.origins == [(3061626181, 1)] and contents.right_origins == [(3061626181, 2)]
    for update in (JS_INSERT_INSIDE_PAIR, JS_DELETE_HALF_PAIR):
        with pytest.raises(SplitsCharacter):
            doc.apply_update(update, client="js")
    assert doc.text == "a😀b" and doc.rev == 0
    # Pairs the server wrote itself are known too.
    own = LiveDocument(content="")
    own.apply_edit(0, [{"insert": "a😀b"}])
    peer = Peer(own.encode_state())
    peer.text.insert(len("a😀".encode()), "ok")  # after the pair: fine
    own.apply_update(peer.doc.get_update(own.state_vector()), client="peer")
    assert own.text == "a😀okb"
