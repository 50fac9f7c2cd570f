"""Deltas over text counted in Unicode code points, and their operational transformation.

A delta is a list of ops walked from the start of a text: ``{"retain": n}`` keeps n code points,
``{"insert": s}`` inserts s, ``{"delete": n}`` removes n code points. Python ``str`` indexes are
code points, so positions need no conversion here (pycrdt's UTF-8 byte offsets are the document's
concern).

The canonical form merges adjacent ops of one kind, puts an insert before a delete it touches and
drops a trailing retain, so equal edits compare equal.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable

from notes.collab.text import text_problem

Op = dict
Delta = list[dict]

KINDS = ("retain", "insert", "delete")

#: Middles of ``diff`` longer than this (on either side) are replaced wholesale, not refined.
DIFF_REFINE_LIMIT = 2000


class DeltaError(ValueError):
    """A delta is malformed, or does not fit the text it is applied to."""


# --- validation -------------------------------------------------------------------------------


def validate_delta(raw: object) -> Delta:
    """Check untrusted JSON and return its ops, copied but not normalized.

    Unlike ``parse_delta`` this keeps a trailing retain, so ``base_length`` still sees how far the
    delta reaches (``[{"retain": 9}]`` must not fit a text of 8 code points).
    """
    if not isinstance(raw, list):
        raise DeltaError("a delta must be a list of ops")
    return [_validate_op(i, op) for i, op in enumerate(raw)]


def _validate_op(i: int, op: object) -> Op:
    if not isinstance(op, dict) or len(op) != 1:
        raise DeltaError(f"op {i} must be an object with exactly one of retain, insert, delete")
    ((kind, value),) = op.items()
    if kind == "insert":
        if not isinstance(value, str) or not value:
            raise DeltaError(f"op {i}: insert must be a non-empty string")
        problem = text_problem(value)
        if problem:
            raise DeltaError(f"op {i}: {problem}")
        return {"insert": value}
    if kind in ("retain", "delete"):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DeltaError(f"op {i}: {kind} must be an integer >= 1")
        return {kind: value}
    raise DeltaError(f"op {i}: unknown op {kind!r} (expected retain, insert or delete)")


def parse_delta(raw: object) -> Delta:
    """Validate untrusted JSON (see ``validate_delta``) and return it normalized."""
    return normalize(validate_delta(raw))


# --- building canonical deltas ----------------------------------------------------------------


def _kind(op: Op) -> str:
    if "insert" in op:
        return "insert"
    return "retain" if "retain" in op else "delete"


def _size(op: Op) -> int:
    value = next(iter(op.values()))
    return len(value) if isinstance(value, str) else value


def _push(ops: Delta, kind: str, value: int | str) -> None:
    """Append an op to ``ops``, keeping them canonical (merged, inserts before deletes)."""
    if not value:
        return
    last = ops[-1] if ops else None
    if kind == "insert" and last is not None and "delete" in last:
        if len(ops) >= 2 and "insert" in ops[-2]:
            ops[-2] = {"insert": ops[-2]["insert"] + value}
        else:
            ops.insert(len(ops) - 1, {"insert": value})
    elif last is not None and kind in last:
        ops[-1] = {kind: last[kind] + value}
    else:
        ops.append({kind: value})


def _push_op(ops: Delta, op: Op) -> None:
    kind = _kind(op)
    _push(ops, kind, op[kind])


def _finish(ops: Delta) -> Delta:
    if ops and "retain" in ops[-1]:
        ops.pop()
    return ops


def normalize(delta: Delta) -> Delta:
    """Return the canonical form of a (valid) delta; the input is not modified."""
    ops: Delta = []
    for op in delta:
        _push_op(ops, op)
    return _finish(ops)


# --- measuring and applying -------------------------------------------------------------------


def base_length(delta: Delta) -> int:
    """The number of code points the delta walks over: the minimum length of a text it fits."""
    return sum(_size(op) for op in delta if "insert" not in op)


def length_change(delta: Delta) -> int:
    """How many code points longer (or, negative, shorter) the delta makes a text."""
    change = 0
    for op in delta:
        if "insert" in op:
            change += len(op["insert"])
        elif "delete" in op:
            change -= op["delete"]
    return change


def _reach(text: str, pos: int, op: Op) -> int:
    """Where a retain or delete at ``pos`` ends; DeltaError if that is past the end of ``text``."""
    end = pos + _size(op)
    if end > len(text):
        raise DeltaError(f"the delta reaches code point {end} but the text has only {len(text)}")
    return end


def apply_delta(text: str, delta: Delta) -> str:
    """Apply a delta to ``text``; the part past the delta's reach is kept."""
    pieces: list[str] = []
    pos = 0
    for op in delta:
        if "insert" in op:
            pieces.append(op["insert"])
            continue
        end = _reach(text, pos, op)
        if "retain" in op:
            pieces.append(text[pos:end])
        pos = end
    pieces.append(text[pos:])
    return "".join(pieces)


def invert(delta: Delta, text: str) -> Delta:
    """The delta undoing ``delta``: ``apply(apply(text, d), invert(d, text)) == text``."""
    ops: Delta = []
    pos = 0
    for op in delta:
        if "insert" in op:
            _push(ops, "delete", len(op["insert"]))
            continue
        end = _reach(text, pos, op)
        if "retain" in op:
            _push(ops, "retain", end - pos)
        else:
            _push(ops, "insert", text[pos:end])
        pos = end
    return _finish(ops)


# --- walking two deltas side by side ----------------------------------------------------------


class _Walker:
    """Reads a delta op by op, handing out pieces of ops; past the end it yields endless retain."""

    def __init__(self, delta: Delta) -> None:
        self._ops = delta
        self._index = 0
        self._offset = 0

    def done(self) -> bool:
        return self._index >= len(self._ops)

    def kind(self) -> str:
        return "retain" if self.done() else _kind(self._ops[self._index])

    def remaining(self) -> float:
        if self.done():
            return math.inf
        return _size(self._ops[self._index]) - self._offset

    def take(self, n: float = math.inf) -> Op:
        """Consume up to ``n`` code points of the current op and return them as an op."""
        if self.done():
            return {"retain": n}
        op = self._ops[self._index]
        kind = _kind(op)
        count = int(min(n, _size(op) - self._offset))
        if kind == "insert":
            piece: Op = {"insert": op["insert"][self._offset : self._offset + count]}
        else:
            piece = {kind: count}
        self._offset += count
        if self._offset >= _size(op):
            self._index += 1
            self._offset = 0
        return piece

    def rest(self) -> Delta:
        """Consume and return everything left."""
        ops = [self.take()] if self._offset and not self.done() else []
        ops.extend(self._ops[self._index :])
        self._index = len(self._ops)
        return ops


def transform(a: Delta, b: Delta, *, a_first: bool) -> Delta:
    """Rewrite ``a`` to apply after ``b``, both made on the same text.

    ``a_first`` settles inserts at the same position: True puts a's insert before b's.
    ``transform(a, b, a_first=f)`` and ``transform(b, a, a_first=not f)`` lead to the same text.
    """
    ops: Delta = []
    wa, wb = _Walker(a), _Walker(b)
    while not wa.done():
        if wa.kind() == "insert" and (a_first or wb.kind() != "insert"):
            _push_op(ops, wa.take())
        elif wb.kind() == "insert":
            _push(ops, "retain", _size(wb.take()))
        else:
            n = min(wa.remaining(), wb.remaining())
            op_a, op_b = wa.take(n), wb.take(n)
            if "delete" in op_b:
                continue
            _push_op(ops, op_a)
    return _finish(ops)


# A revision is mostly one keystroke: a retain, then an insert or a delete at one place. One such
# edit transformed past another is arithmetic on (position, inserted text, deleted count), which
# ``transform_past`` does wherever both are that simple and where they do not overlap; the
# general walk does the rest (tests/test_delta.py checks that the two always agree).
Splice = tuple[int, str, int]


def as_splice(delta: Delta) -> Splice | None:
    """A canonical delta that changes one place as (position, inserted text, deleted count);
    None for any other."""
    pos, text, deleted, i, n = 0, "", 0, 0, len(delta)
    if i < n and "retain" in delta[i]:
        pos, i = delta[i]["retain"], i + 1
    if i < n and "insert" in delta[i]:
        text, i = delta[i]["insert"], i + 1
    if i < n and "delete" in delta[i]:
        deleted, i = delta[i]["delete"], i + 1
    return (pos, text, deleted) if i == n else None


def _splice_delta(splice: Splice) -> Delta:
    pos, text, deleted = splice
    if not text and not deleted:
        return []
    ops: Delta = [{"retain": pos}] if pos else []
    if text:
        ops.append({"insert": text})
    if deleted:
        ops.append({"delete": deleted})
    return ops


def transform_past(delta: Delta, later: Iterable[tuple[Delta, Splice | None]]) -> Delta:
    """``delta`` (canonical) transformed past each of ``later`` in turn, as
    ``transform(delta, b, a_first=False)`` for each ``b``: those went first. ``later`` gives
    each delta with its ``as_splice``.

    While both are single-place edits that do not overlap, ``delta`` is either wholly before
    ``b`` (unchanged; at the same position b's insert goes first) or wholly after it (moved by
    what b inserted and deleted); the general walk does every other case.
    """
    splice = as_splice(delta)
    for b, b_splice in later:
        if splice is not None:
            if b_splice is not None:
                pa, ia, da = splice
                pb, ib, db = b_splice
                if not ib and not db:
                    continue
                end = pa + da
                if end < pb or (end == pb and (da or not ib)):
                    continue
                if pa >= pb + db:
                    splice = (pa + len(ib) - db, ia, da)
                    continue
            delta = _splice_delta(splice)
        delta = transform(delta, b, a_first=False)
        splice = as_splice(delta)
    return delta if splice is None else _splice_delta(splice)


def compose(a: Delta, b: Delta) -> Delta:
    """One delta doing ``a`` then ``b``: ``apply(t, compose(a, b)) == apply(apply(t, a), b)``."""
    ops: Delta = []
    wa, wb = _Walker(a), _Walker(b)
    while not (wa.done() and wb.done()):
        if wb.kind() == "insert":
            _push_op(ops, wb.take())
        elif wa.kind() == "delete":
            _push_op(ops, wa.take())
        elif wb.done():
            for op in wa.rest():
                _push_op(ops, op)
        elif wa.done():
            for op in wb.rest():
                _push_op(ops, op)
        else:
            n = min(wa.remaining(), wb.remaining())
            op_a, op_b = wa.take(n), wb.take(n)
            if "retain" in op_b:
                _push_op(ops, op_a)
            elif "retain" in op_a:
                _push(ops, "delete", n)
    return _finish(ops)


# --- carets -----------------------------------------------------------------------------------


def transform_index(index: int, delta: Delta) -> int:
    """Move a caret through a delta.

    An insert exactly at the caret pushes it right; a deleted range holding the caret collapses to
    its start.
    """
    offset = 0  # position in the new text reached so far
    for op in delta:
        if offset > index:
            break
        if "insert" in op:
            size = len(op["insert"])
            index += size
            offset += size
        elif "retain" in op:
            offset += op["retain"]
        else:
            index -= min(op["delete"], index - offset)
    return index


def transform_cursor(cursor: dict | None, delta: Delta) -> dict | None:
    """Move a cursor ``{"index": i, "length": n}`` (or None) through a delta, both of its ends."""
    if cursor is None:
        return None
    start = cursor["index"]
    end = start + cursor["length"]
    new_start = transform_index(start, delta)
    new_end = new_start if end == start else max(new_start, transform_index(end, delta))
    return {"index": new_start, "length": new_end - new_start}


# --- diff -------------------------------------------------------------------------------------


def _common_prefix(a: str, b: str) -> int:
    """Length of the common prefix, by bisection on C-level slice comparisons."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _common_suffix(a: str, b: str, limit: int) -> int:
    lo, hi = 0, limit
    la, lb = len(a), len(b)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[la - mid : la - lo] == b[lb - mid : lb - lo]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def diff(old: str, new: str) -> Delta:
    """A small delta turning ``old`` into ``new``.

    The common prefix and suffix are trimmed; a small middle is refined with difflib, a large one is
    replaced wholesale (difflib is quadratic in the worst case).
    """
    prefix = _common_prefix(old, new)
    suffix = _common_suffix(old, new, min(len(old), len(new)) - prefix)
    old_mid = old[prefix : len(old) - suffix]
    new_mid = new[prefix : len(new) - suffix]
    ops: Delta = []
    _push(ops, "retain", prefix)
    if len(old_mid) < DIFF_REFINE_LIMIT and len(new_mid) < DIFF_REFINE_LIMIT:
        matcher = difflib.SequenceMatcher(None, old_mid, new_mid, autojunk=False)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag == "equal":
                _push(ops, "retain", i2 - i1)
            else:
                _push(ops, "insert", new_mid[j1:j2])
                _push(ops, "delete", i2 - i1)
    else:
        _push(ops, "insert", new_mid)
        _push(ops, "delete", len(old_mid))
    return _finish(ops)


# --- UTF-8 ------------------------------------------------------------------------------------


def utf8_offset(text: str, index: int) -> int:
    """The UTF-8 byte offset of code point ``index`` in ``text`` (pycrdt counts bytes)."""
    if text.isascii():
        return index
    return len(text[:index].encode("utf-8"))
