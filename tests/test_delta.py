"""Deltas over code points: validation, apply, transform, compose, diff, carets."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notes.collab.delta import (
    DeltaError,
    apply_delta,
    as_splice,
    base_length,
    compose,
    diff,
    invert,
    length_change,
    normalize,
    parse_delta,
    transform,
    transform_cursor,
    transform_index,
    transform_past,
    utf8_offset,
    validate_delta,
)

SAMPLE = "héllo 漢字"  # length 8

ALPHABET = "aé漢😀\n𝄞"
texts = st.text(alphabet=ALPHABET, max_size=30)
inserts = st.text(alphabet=ALPHABET, min_size=1, max_size=5)


@st.composite
def deltas_on(draw: st.DrawFn, text: str) -> list[dict]:
    """Any valid delta on ``text``: not necessarily canonical (adjacent kinds, trailing retain)."""
    ops: list[dict] = []
    left = len(text)
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["retain", "insert", "delete"] if left else ["insert"]))
        if kind == "insert":
            ops.append({"insert": draw(inserts)})
        else:
            n = draw(st.integers(1, left))
            ops.append({kind: n})
            left -= n
    return ops


@st.composite
def text_and_two_deltas(draw: st.DrawFn) -> tuple[str, list[dict], list[dict]]:
    text = draw(texts)
    return text, draw(deltas_on(text)), draw(deltas_on(text))


def is_canonical(delta: list[dict]) -> bool:
    return normalize(delta) == delta


# --- parse_delta ------------------------------------------------------------------------------


def test_parse_delta_normalizes() -> None:
    raw = [{"retain": 1}, {"retain": 2}, {"delete": 1}, {"insert": "é"}, {"insert": "😀"},
           {"retain": 4}]
    assert parse_delta(raw) == [{"retain": 3}, {"insert": "é😀"}, {"delete": 1}]
    assert parse_delta([]) == []


@pytest.mark.parametrize(
    "raw",
    [
        None,
        {"insert": "漢"},
        "😀",
        [{"retain": True}],
        [{"delete": False}],
        [{"retain": 0}],
        [{"delete": -2}],
        [{"retain": 1.0}],
        [{"retain": "3"}],
        [{"insert": ""}],
        [{"insert": 5}],
        [{"insert": "\ud800"}],
        [{"insert": "é", "retain": 1}],
        [{"bold": True}],
        [{"insert": "漢", "attributes": {"bold": True}}],
        [{}],
        ["😀"],
        [[{"retain": 1}]],
    ],
)
def test_parse_delta_rejects(raw: object) -> None:
    with pytest.raises(DeltaError):
        parse_delta(raw)


def test_delta_error_is_a_value_error_with_a_message() -> None:
    with pytest.raises(ValueError, match="op 1"):
        parse_delta([{"insert": "é"}, {"delete": 0}])


def test_validate_delta_keeps_trailing_retain() -> None:
    assert validate_delta([{"retain": 9}]) == [{"retain": 9}]
    assert base_length(validate_delta([{"retain": 9}])) == 9
    assert parse_delta([{"retain": 9}]) == []


# --- apply ------------------------------------------------------------------------------------


def test_apply_examples_from_protocol() -> None:
    assert apply_delta(SAMPLE, [{"retain": 6}, {"insert": "😀 "}]) == "héllo 😀 漢字"
    assert apply_delta(SAMPLE, [{"delete": 1}, {"insert": "H"}]) == "Héllo 漢字"
    assert apply_delta(SAMPLE, [{"retain": 7}, {"delete": 1}]) == "héllo 漢"
    assert apply_delta(SAMPLE, []) == SAMPLE
    with pytest.raises(DeltaError):
        apply_delta(SAMPLE, [{"retain": 9}])
    with pytest.raises(DeltaError):
        apply_delta(SAMPLE, [{"retain": 7}, {"delete": 2}])


def test_positions_are_code_points() -> None:
    text = "a😀b"
    assert apply_delta(text, [{"retain": 2}, {"insert": "漢"}]) == "a😀漢b"
    assert apply_delta(text, [{"retain": 1}, {"delete": 1}]) == "ab"


def test_apply_is_fast_on_100kb() -> None:
    text = ("héllo 漢字 😀 " * 10_000)[:100_000]
    delta = []
    for _ in range(500):
        delta += [{"retain": 150}, {"insert": "é"}, {"delete": 1}]
    start = time.perf_counter()
    for _ in range(20):
        result = apply_delta(text, delta)
    assert time.perf_counter() - start < 1.0
    assert len(result) == len(text)


def test_lengths() -> None:
    delta = [{"retain": 2}, {"insert": "😀😀"}, {"delete": 3}]
    assert base_length(delta) == 5
    assert length_change(delta) == -1


# --- transform --------------------------------------------------------------------------------


def test_transform_tie_order() -> None:
    a = [{"retain": 1}, {"insert": "漢"}]
    b = [{"retain": 1}, {"insert": "😀"}]
    text = "éé"
    assert apply_delta(apply_delta(text, b), transform(a, b, a_first=True)) == "é漢😀é"
    assert apply_delta(apply_delta(text, b), transform(a, b, a_first=False)) == "é😀漢é"


def test_transform_overlapping_deletes() -> None:
    text = "漢字😀é"
    a = [{"delete": 3}]
    b = [{"retain": 1}, {"delete": 3}]
    assert transform(a, b, a_first=True) == [{"delete": 1}]
    assert transform(b, a, a_first=False) == [{"delete": 1}]
    left = apply_delta(apply_delta(text, a), transform(b, a, a_first=False))
    assert left == apply_delta(apply_delta(text, b), transform(a, b, a_first=True)) == ""


def test_insert_inside_deleted_range_survives() -> None:
    text = "é漢字😀"
    a = [{"retain": 2}, {"insert": "X"}]
    b = [{"retain": 1}, {"delete": 2}]
    assert apply_delta(apply_delta(text, b), transform(a, b, a_first=False)) == "éX😀"


@settings(max_examples=400, deadline=None)
@given(text_and_two_deltas(), st.booleans())
def test_transform_converges(case: tuple[str, list[dict], list[dict]], a_first: bool) -> None:
    text, a, b = case
    a_after_b = transform(a, b, a_first=a_first)
    b_after_a = transform(b, a, a_first=not a_first)
    assert is_canonical(a_after_b) and is_canonical(b_after_a)
    via_a = apply_delta(apply_delta(text, a), b_after_a)
    via_b = apply_delta(apply_delta(text, b), a_after_b)
    assert via_a == via_b


@settings(max_examples=200, deadline=None)
@given(text_and_two_deltas())
def test_transform_keeps_every_insert(case: tuple[str, list[dict], list[dict]]) -> None:
    text, a, b = case
    merged = apply_delta(apply_delta(text, b), transform(a, b, a_first=True))
    inserted = sum(len(op["insert"]) for op in a + b if "insert" in op)
    assert len(merged) >= inserted


# --- compose ----------------------------------------------------------------------------------


@st.composite
def text_and_sequential_deltas(draw: st.DrawFn) -> tuple[str, list[dict], list[dict]]:
    text = draw(texts)
    a = draw(deltas_on(text))
    b = draw(deltas_on(apply_delta(text, a)))
    return text, a, b


def test_compose_example() -> None:
    a = [{"retain": 1}, {"insert": "😀"}]
    b = [{"retain": 2}, {"insert": "漢"}, {"delete": 1}]
    assert compose(a, b) == [{"retain": 1}, {"insert": "😀漢"}, {"delete": 1}]
    assert apply_delta("éa", compose(a, b)) == "é😀漢"


@settings(max_examples=300, deadline=None)
@given(text_and_sequential_deltas())
def test_compose_law(case: tuple[str, list[dict], list[dict]]) -> None:
    text, a, b = case
    composed = compose(a, b)
    assert is_canonical(composed)
    assert apply_delta(text, composed) == apply_delta(apply_delta(text, a), b)


@settings(max_examples=200, deadline=None)
@given(text_and_two_deltas())
def test_invert(case: tuple[str, list[dict], list[dict]]) -> None:
    text, a, _ = case
    assert apply_delta(apply_delta(text, a), invert(a, text)) == text


# --- normalize --------------------------------------------------------------------------------


def test_normalize_puts_insert_before_delete() -> None:
    raw = [{"delete": 1}, {"insert": "漢"}, {"delete": 2}, {"insert": "😀"}, {"retain": 1}]
    assert normalize(raw) == [{"insert": "漢😀"}, {"delete": 3}]
    assert raw[0] == {"delete": 1}


@settings(max_examples=200, deadline=None)
@given(text_and_two_deltas())
def test_normalize_keeps_meaning(case: tuple[str, list[dict], list[dict]]) -> None:
    text, a, _ = case
    assert apply_delta(text, normalize(a)) == apply_delta(text, a)
    assert normalize(normalize(a)) == normalize(a)


# --- diff -------------------------------------------------------------------------------------


def test_diff_is_small() -> None:
    assert diff("héllo 漢字", "héllo 😀 漢字") == [{"retain": 6}, {"insert": "😀 "}]
    assert diff("漢字", "漢字") == []
    assert diff("é😀", "") == [{"delete": 2}]
    assert diff("", "é😀") == [{"insert": "é😀"}]
    assert diff("a😀b😀c", "a😀Xb😀c") == [{"retain": 2}, {"insert": "X"}]


def test_diff_refines_middles() -> None:
    old = "é" + "漢" * 50 + "😀" + "字" * 50 + "é"
    new = "é" + "漢" * 50 + "X" + "字" * 50 + "Y"
    delta = diff(old, new)
    assert apply_delta(old, delta) == new
    assert sum(len(op.get("insert", "")) for op in delta) == 2


def test_diff_is_fast_on_a_megabyte() -> None:
    old = "é漢😀 words " * 100_000
    new = old[:300_000] + "inserted 字" + old[300_001:700_000] + old[700_500:]
    start = time.perf_counter()
    delta = diff(old, new)
    assert time.perf_counter() - start < 1.0
    assert apply_delta(old, delta) == new
    assert delta[0] == {"retain": 300_000}


@settings(max_examples=300, deadline=None)
@given(texts, texts)
def test_diff_law(old: str, new: str) -> None:
    delta = diff(old, new)
    assert is_canonical(delta)
    assert apply_delta(old, delta) == new


# --- carets -----------------------------------------------------------------------------------


def test_transform_index() -> None:
    insert_at_2 = [{"retain": 2}, {"insert": "😀😀"}]
    assert transform_index(1, insert_at_2) == 1
    assert transform_index(2, insert_at_2) == 4
    assert transform_index(5, insert_at_2) == 7
    delete_1_to_4 = [{"retain": 1}, {"delete": 3}]
    assert transform_index(0, delete_1_to_4) == 0
    assert transform_index(1, delete_1_to_4) == 1
    assert transform_index(3, delete_1_to_4) == 1
    assert transform_index(4, delete_1_to_4) == 1
    assert transform_index(6, delete_1_to_4) == 3


def test_transform_cursor() -> None:
    assert transform_cursor(None, [{"insert": "é"}]) is None
    cursor = {"index": 2, "length": 3}
    assert transform_cursor(cursor, [{"insert": "漢字"}]) == {"index": 4, "length": 3}
    assert transform_cursor(cursor, [{"retain": 3}, {"delete": 5}]) == {"index": 2, "length": 1}
    assert transform_cursor(cursor, [{"delete": 9}]) == {"index": 0, "length": 0}
    caret = {"index": 1, "length": 0}
    assert transform_cursor(caret, [{"retain": 1}, {"insert": "😀"}]) == {"index": 2, "length": 0}


@settings(max_examples=300, deadline=None)
@given(text_and_two_deltas())
def test_transform_index_follows_kept_characters(case: tuple[str, list[dict], list[dict]]) -> None:
    text, a, _ = case
    new = apply_delta(text, a)
    deleted = _deleted_positions(a)
    moved = [transform_index(i, a) for i in range(len(text) + 1)]
    assert moved == sorted(moved)
    assert all(0 <= m <= len(new) for m in moved)
    for i, char in enumerate(text):
        if i not in deleted:
            assert new[moved[i]] == char


def _deleted_positions(delta: list[dict]) -> set[int]:
    deleted: set[int] = set()
    pos = 0
    for op in delta:
        if "delete" in op:
            deleted.update(range(pos, pos + op["delete"]))
        if "insert" not in op:
            pos += next(iter(op.values()))
    return deleted


# --- UTF-8 ------------------------------------------------------------------------------------


def test_utf8_offset() -> None:
    text = "aé漢😀b"
    assert [utf8_offset(text, i) for i in range(6)] == [0, 1, 3, 6, 10, 11]
    assert utf8_offset("plain ascii", 5) == 5


@st.composite
def splice_on(draw: st.DrawFn, text: str) -> list[dict]:
    """A keystroke-like delta on ``text``: one insert and/or delete at one place."""
    pos = draw(st.integers(0, len(text)))
    deleted = draw(st.integers(0, min(3, len(text) - pos)))
    inserted = draw(st.sampled_from(["", "x", "é漢", "😀"]))
    return normalize([{"retain": pos}, {"insert": inserted} if inserted else {"retain": 0},
                      {"delete": deleted} if deleted else {"retain": 0}])


@st.composite
def edit_and_later_revisions(draw: st.DrawFn) -> tuple[list[dict], list[list[dict]]]:
    """An edit made on a text, and the revisions applied since (each on the text before it),
    mostly single-place ones, as typing makes them."""
    text = draw(st.text(alphabet="ab", max_size=12))
    edit = normalize(draw(st.one_of(splice_on(text), deltas_on(text))))
    later = []
    for _ in range(draw(st.integers(0, 8))):
        delta = normalize(draw(st.one_of(splice_on(text), splice_on(text), deltas_on(text))))
        later.append(delta)
        text = apply_delta(text, delta)
    return edit, later


@settings(max_examples=2000, deadline=None)
@given(edit_and_later_revisions())
def test_transform_past_equals_transforming_one_by_one(
        case: tuple[list[dict], list[list[dict]]]) -> None:
    """The arithmetic for single-place edits gives exactly what the general walk gives."""
    edit, later = case
    expected = edit
    for revision in later:
        expected = transform(expected, revision, a_first=False)
    assert transform_past(edit, [(b, as_splice(b)) for b in later]) == expected
