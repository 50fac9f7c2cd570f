"""The live document: one note's text as a pycrdt ``Doc``, with numbered revisions for OT.

Clients speak code points; pycrdt's ``Text`` indexes UTF-8 bytes. The document keeps a ``str``
mirror of the content for all code-point work and converts positions to bytes only when it writes
an applied delta into the ``Text``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from pycrdt import Doc, Text

from notes.collab import delta as deltas
from notes.collab.delta import Delta, DeltaError

TEXT_NAME = "content"


class EditRejected(Exception):
    """An edit (or cursor) was refused; nothing changed. ``code`` is the protocol error code."""

    code = "rejected"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadDelta(EditRejected):
    code = "bad_delta"


class BadMessage(EditRejected):
    code = "bad_message"


class FutureRevision(EditRejected):
    code = "future_rev"


class StaleRevision(EditRejected):
    """The base revision is older than the history kept: the client must resync."""

    code = "stale"


class TooLarge(EditRejected):
    code = "too_large"


@dataclass(frozen=True)
class Revision:
    rev: int
    delta: Delta
    client: str | None
    ref: object | None = None


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


class LiveDocument:
    """A note's content with its recent revisions.

    Every applied edit becomes the next revision, written to the ``Text`` in one pycrdt transaction.
    The last ``history_limit`` revisions are kept so that edits made on them can be transformed.
    """

    def __init__(
        self,
        *,
        content: str = "",
        rev: int = 0,
        state: bytes | None = None,
        history_limit: int = 2000,
        max_length: int = 1_000_000,
        history: list[Revision] | None = None,
    ) -> None:
        self._doc: Doc = Doc()
        if state is not None:
            self._doc.apply_update(state)
            self._ytext: Text = self._doc.get(TEXT_NAME, type=Text)
            self._text = str(self._ytext)
        else:
            self._ytext = Text(content)
            self._doc[TEXT_NAME] = self._ytext
            self._text = content
        self._rev = rev
        self._history: deque[Revision] = deque(maxlen=history_limit)
        self.max_length = max_length
        if history and _consecutive_up_to(history, rev):
            self._history.extend(history)

    @property
    def text(self) -> str:
        return self._text

    @property
    def rev(self) -> int:
        return self._rev

    @property
    def doc(self) -> Doc:
        return self._doc

    @property
    def ytext(self) -> Text:
        return self._ytext

    def encode_state(self) -> bytes:
        """The full Yjs update of the document (what ``LiveDocument(state=...)`` loads)."""
        return self._doc.get_update()

    # --- history ------------------------------------------------------------------------------

    def _oldest_base(self) -> int:
        """The oldest revision an edit can be based on and still be transformed."""
        return self._rev - len(self._history)

    def _check_base(self, base_rev: int) -> None:
        if base_rev > self._rev:
            raise FutureRevision(f"revision {base_rev} is newer than the document's {self._rev}")
        if base_rev < self._oldest_base():
            raise StaleRevision(
                f"revision {base_rev} is older than the history kept (from {self._oldest_base()})"
            )

    def _after(self, base_rev: int) -> list[Revision]:
        count = self._rev - base_rev
        if count == 0:
            return []
        return list(self._history)[-count:]

    def recent_revisions(self, count: int) -> list[Revision]:
        """The last ``count`` revisions (persisted with the note, so they survive a restart)."""
        return list(self._history)[-count:] if count > 0 else []

    def revisions_since(self, rev: int) -> list[Revision] | None:
        """The revisions after ``rev``, or None when the history does not reach back that far."""
        if rev > self._rev:
            raise FutureRevision(f"revision {rev} is newer than the document's {self._rev}")
        if rev < self._oldest_base():
            return None
        return self._after(rev)

    # --- edits --------------------------------------------------------------------------------

    def apply_edit(
        self,
        base_rev: int,
        delta: object,
        *,
        client: str | None = None,
        ref: object | None = None,
    ) -> tuple[Revision, bool]:
        """Apply a client's delta made on ``base_rev``; return (revision, was_duplicate).

        The delta is transformed past every later revision, those going first at equal positions
        (the server applied them first). A string ``ref`` already seen after ``base_rev`` marks a
        resent edit: its original revision is returned and nothing is applied.
        """
        try:
            ops = deltas.validate_delta(delta)
        except DeltaError as error:
            raise BadDelta(str(error)) from None
        self._check_base(base_rev)
        later = self._after(base_rev)
        if isinstance(ref, str):
            for revision in later:
                if revision.ref == ref:
                    return revision, True
        base_text_length = len(self._text) - sum(deltas.length_change(r.delta) for r in later)
        reach = deltas.base_length(ops)
        if reach > base_text_length:
            raise BadDelta(
                f"the delta reaches code point {reach} but revision {base_rev} "
                f"has only {base_text_length}"
            )
        transformed = deltas.normalize(ops)
        for revision in later:
            transformed = deltas.transform(transformed, revision.delta, a_first=False)
        return self._commit(transformed, client, ref), False

    def replace_text(self, new_text: str, *, client: str | None = None) -> Revision | None:
        """Make the content ``new_text`` by a minimal diff: concurrent edits elsewhere survive."""
        if new_text == self._text:
            return None
        self._check_length(len(new_text))
        return self._commit(deltas.diff(self._text, new_text), client, None)

    def _check_length(self, new_length: int) -> None:
        """Refuse growth past ``max_length``; an edit that does not lengthen the text may pass."""
        if new_length > self.max_length and new_length > len(self._text):
            raise TooLarge(
                f"the note would be {new_length} code points long; the limit is {self.max_length}"
            )

    def _commit(self, delta: Delta, client: str | None, ref: object | None) -> Revision:
        try:
            new_text = deltas.apply_delta(self._text, delta)
        except DeltaError as error:
            raise BadDelta(str(error)) from None
        self._check_length(len(new_text))
        self._write_ytext(delta)
        self._text = new_text
        self._rev += 1
        revision = Revision(self._rev, delta, client, ref)
        self._history.append(revision)
        return revision

    def _write_ytext(self, delta: Delta) -> None:
        """Apply a code-point delta (fitting the current mirror) to the byte-indexed ``Text``."""
        old = self._text
        ascii_only = old.isascii()
        pos = 0  # code points into the old text
        offset = 0  # bytes into the Text as edited so far
        with self._doc.transaction():
            for op in delta:
                if "insert" in op:
                    self._ytext.insert(offset, op["insert"])
                    offset += _utf8_len(op["insert"])
                    continue
                count = op.get("retain") or op["delete"]
                size = count if ascii_only else _utf8_len(old[pos : pos + count])
                if "delete" in op:
                    del self._ytext[offset : offset + size]
                else:
                    offset += size
                pos += count

    # --- cursors ------------------------------------------------------------------------------

    def transform_cursor(self, base_rev: int, cursor: object) -> dict | None:
        """Move a cursor made on ``base_rev`` to the current revision, clamped to the text."""
        if cursor is None:
            self._check_base(base_rev)
            return None
        index, length = _cursor_fields(cursor)
        self._check_base(base_rev)
        moved: dict | None = {"index": index, "length": length}
        for revision in self._after(base_rev):
            moved = deltas.transform_cursor(moved, revision.delta)
        assert moved is not None
        size = len(self._text)
        start = min(moved["index"], size)
        return {"index": start, "length": min(moved["length"], size - start)}


def _consecutive_up_to(history: list[Revision], rev: int) -> bool:
    return all(r.rev == rev - len(history) + 1 + i for i, r in enumerate(history))


def _cursor_fields(cursor: object) -> tuple[int, int]:
    if not isinstance(cursor, dict):
        raise BadMessage("a cursor must be an object {index, length} or null")
    values = []
    for key in ("index", "length"):
        value = cursor.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise BadMessage(f"cursor {key} must be an integer >= 0")
        values.append(value)
    return values[0], values[1]
