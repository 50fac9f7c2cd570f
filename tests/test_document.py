"""LiveDocument: revisions, transformation past history, rejections, the pycrdt Text mirror."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notes.collab.delta import apply_delta
from notes.collab.document import (
    BadDelta,
    BadMessage,
    EditRejected,
    FutureRevision,
    LiveDocument,
    Revision,
    StaleRevision,
    TooLarge,
)

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


def test_a_ref_before_the_base_is_not_a_duplicate() -> None:
    doc = LiveDocument(content=SAMPLE)
    doc.apply_edit(0, [{"insert": "é"}], ref="s:1")
    _, duplicate = doc.apply_edit(1, [{"insert": "é"}], ref="s:1")
    assert not duplicate
    assert doc.rev == 2


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
    loaded = LiveDocument(state=doc.encode_state(), rev=doc.rev, content="ignored")
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
