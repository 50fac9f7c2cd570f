"""The live document: one note's text as a pycrdt ``Doc``, with numbered revisions for OT.

Clients of the JSON protocol speak code points; pycrdt's ``Text`` indexes UTF-8 bytes; Yjs clients
send updates (which carry no positions). The document keeps a ``str`` mirror of the content for
all code-point work; this module is the one boundary where positions change units: an applied
delta is written into the ``Text`` in bytes, and the byte delta a Yjs update made is read back as
code points (see ``_code_point_delta``).

The document holds two shared types: the ``Text`` named ``content`` and the ``Text`` named
``title``. Other shared types a Yjs client creates are kept (and stored) but mean nothing here.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections import deque
from dataclasses import dataclass, field
from itertools import islice

from pycrdt import Doc, Subscription, Text, TextEvent, TransactionEvent

from notes.collab import delta as deltas
from notes.collab.delta import Delta, DeltaError
from notes.collab.lib0 import DecodeError
from notes.collab.yupdate import (
    SurrogatePairs,
    UpdateContents,
    decode_state_vector,
    read_update,
)

TEXT_NAME = "content"
TITLE_NAME = "title"
EMPTY_UPDATE = b"\x00\x00"
KNOWN_REFS = 10_000  # client refs remembered beyond the kept revisions


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


class BadTitle(EditRejected):
    code = "bad_title"


class BadUpdate(EditRejected):
    """A Yjs update that cannot be decoded or applied; the document is unchanged."""

    code = "bad_update"


class SplitsCharacter(EditRejected):
    """A Yjs update that inserts or deletes between the two UTF-16 halves of a character."""

    code = "splits_character"


@dataclass(frozen=True)
class Revision:
    rev: int
    delta: Delta
    client: str | None
    ref: object | None = None
    # The delta as a single-place change, if it is one (worked out once: edits based on older
    # revisions are transformed past it again and again).
    splice: deltas.Splice | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class UpdateApplied:
    """What one Yjs update from a client did.

    ``revision``: its change to the content (None if it made none); ``title_changed``: it changed
    the title; ``changed``: it changed the document at all; ``complete``: the document holds all
    of it (False: part of it waits for updates not here yet; told for ``stored`` updates only).
    """

    revision: Revision | None
    title_changed: bool
    changed: bool
    complete: bool = True


def _has_astral(text: str) -> bool:
    """Does ``text`` hold a character outside the BMP (two UTF-16 units)?"""
    return not text.isascii() and max(text) > "\uffff"


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
        content: str | None = None,
        title: str | None = None,
        rev: int = 0,
        state: bytes | None = None,
        history_limit: int = 2000,
        max_length: int = 1_000_000,
        load_client_id: int | None = None,
    ) -> None:
        """The document of ``state`` (a Yjs update), holding ``content`` and ``title``.

        Where the state (or its absence) does not hold them, they are written in by the Yjs
        client ``load_client_id`` (see ``load_client_id``): loading the same row twice then
        makes the same Yjs items, so a Yjs client that saw the first load gets no duplicate
        from the second, and loading needs no write. ``content`` or ``title`` None: the state's.
        """
        self._doc, _ = _load(state, content, title, load_client_id)
        self._ytext: Text = self._doc.get(TEXT_NAME, type=Text)
        self._text = str(self._ytext)
        self._ytitle: Text = self._doc.get(TITLE_NAME, type=Text)
        self._title = str(self._ytitle)
        self._astral_written = False  # a local write inserted characters outside the BMP
        self._pairs = SurrogatePairs()
        if _has_astral(self._text) or _has_astral(self._title):
            # (Deleted characters need no entry: their content is gone, split or not.)
            self._pairs.add(read_update(self._doc.get_update()))
        self._rev = rev
        # Revision numbers are this document's own: ``epoch`` names the numbering, so that a
        # client's ``since`` from another process (or an earlier load) is never taken for ours.
        self.epoch = secrets.token_hex(6)
        self._history: deque[Revision] = deque(maxlen=history_limit)
        # The text's length after each revision of the history (and before the oldest).
        self._lengths: deque[int] = deque([len(self._text)], maxlen=history_limit + 1)
        # String refs of the edits applied here or stored anywhere (the log): a resent edit is
        # recognised by its ref. ref -> its revision here (None: applied elsewhere).
        self._refs: dict[str, int | None] = {}
        self.max_length = max_length
        # Every transaction that changes the document counts (``changes``) and leaves its update
        # (``last_update``: what Yjs clients are sent for a change made here).
        self.changes = 0
        self.last_update = EMPTY_UPDATE
        self._subscription: Subscription | None = self._doc.observe(self._on_transaction)
        # While a client's update is applied, the changes it makes to the texts are collected
        # (observers only then: pycrdt builds every text event eagerly, a cost per keystroke).
        self._received_content: list[list[dict]] = []
        self._received_title = False

    @property
    def text(self) -> str:
        return self._text

    @property
    def title(self) -> str:
        return self._title

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

    def state_vector(self) -> bytes:
        return self._doc.get_state()

    def missing_from(self, state_vector: bytes) -> bytes:
        """The update a Yjs peer with ``state_vector`` lacks (sync step 2)."""
        try:
            return self._doc.get_update(state_vector)
        except ValueError as error:
            raise BadUpdate(f"undecodable state vector: {error}") from None

    def close(self) -> None:
        """Stop observing the Yjs document: pycrdt keeps an observed ``Doc`` (and through the
        callback this document) alive for good, beyond the reach of Python's garbage collector,
        so a document that is never closed leaks its whole state (once per note loaded)."""
        if self._subscription is not None:
            self._doc.unobserve(self._subscription)
            self._subscription = None

    def _on_transaction(self, event: TransactionEvent) -> None:
        self.changes += 1
        self.last_update = event.update
        if self._astral_written:  # remote updates are indexed by apply_update
            self._astral_written = False
            self._pairs.add(read_update(event.update))

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
        return list(islice(reversed(self._history), count))[::-1]  # (not a copy of it all)

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
        (the server applied them first). A string ``ref`` already known (applied here, or stored
        by another process: ``remember_refs``) marks a resent edit: its original revision is
        returned and nothing is applied.
        """
        try:
            ops = deltas.validate_delta(delta)
        except DeltaError as error:
            raise BadDelta(str(error)) from None
        self._check_base(base_rev)
        later = self._after(base_rev)
        if isinstance(ref, str) and ref in self._refs:
            return self._original(ref), True
        base_text_length = self._lengths[-1 - len(later)]
        reach = deltas.base_length(ops)
        if reach > base_text_length:
            raise BadDelta(
                f"the delta reaches code point {reach} but revision {base_rev} "
                f"has only {base_text_length}"
            )
        transformed = deltas.transform_past(deltas.normalize(ops),
                                            ((r.delta, r.splice) for r in later))
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
        self._write(self._ytext, self._text, delta)
        self._text = new_text
        return self._record(delta, client, ref)

    def _record(self, delta: Delta, client: str | None, ref: object | None) -> Revision:
        self._rev += 1
        revision = Revision(self._rev, delta, client, ref, deltas.as_splice(delta))
        self._history.append(revision)
        self._lengths.append(len(self._text))
        if isinstance(ref, str):
            self._remember(ref, self._rev)
        return revision

    # --- refs ---------------------------------------------------------------------------------

    def knows_ref(self, ref: str) -> bool:
        return ref in self._refs

    def remember_refs(self, refs: list[str]) -> None:
        """Refs of edits stored by other processes (or before this load): not to apply twice."""
        for ref in refs:
            if ref not in self._refs:
                self._remember(ref, None)

    def _remember(self, ref: str, rev: int | None) -> None:
        self._refs[ref] = rev
        if len(self._refs) > KNOWN_REFS + len(self._history):
            del self._refs[next(iter(self._refs))]

    def _original(self, ref: str) -> Revision:
        """The revision a known ref was applied as; one at the current revision (and with no
        delta) when that was elsewhere or is no longer kept."""
        rev = self._refs[ref]
        if rev is not None and rev > self._oldest_base():
            revision = self._history[rev - self._oldest_base() - 1]
            if revision.ref == ref:
                return revision
        return Revision(self._rev, [], None, ref)

    def _write(self, target: Text, old: str, delta: Delta) -> None:
        """Apply a code-point delta (fitting ``old``, the target's text) to a byte-indexed Text."""
        if _write_delta(self._doc, target, old, delta):
            self._astral_written = True

    # --- the title ----------------------------------------------------------------------------

    def set_title(self, title: str) -> bool:
        """Make the title ``title`` by a minimal diff of the title ``Text``; False if unchanged."""
        if title == self._title:
            return False
        self._write(self._ytitle, self._title, deltas.diff(self._title, title))
        self._title = title
        return True

    # --- Yjs updates from clients -------------------------------------------------------------

    def apply_update(self, update: bytes, *, client: str | None,
                     stored: bool = False) -> UpdateApplied:
        """Apply a Yjs update; its change to the content becomes the next revision.

        Refused (``BadUpdate``, ``TooLarge``) with the document unchanged when the update cannot
        be decoded or would make the content longer than ``max_length`` code points. A
        ``stored`` update (from the log, checked by the process that stored it) is not refused.
        """
        if update == EMPTY_UPDATE:
            return UpdateApplied(None, False, False)
        try:
            contents = read_update(update)
        except DecodeError as error:
            raise BadUpdate(f"undecodable update: {error}") from None
        if not stored:
            self._check_update(update, contents)
        changes = self.changes
        content_events = self._ytext.observe(self._on_content_event)
        title_events = self._ytitle.observe(self._on_title_event)
        try:
            self._doc.apply_update(update)
        except ValueError as error:
            raise BadUpdate(f"undecodable update: {error}") from None
        finally:
            self._ytext.unobserve(content_events)
            self._ytitle.unobserve(title_events)
            received, self._received_content = self._received_content, []
            title_changed, self._received_title = self._received_title, False
        self._pairs.add(contents)
        revision = None
        if received:
            old = self._text
            new = str(self._ytext)
            delta = _received_delta(old, received, new)
            self._text = new
            if delta:
                revision = self._record(delta, client, None)
        if title_changed:
            self._title = str(self._ytitle)
        # (An update applied before what it builds on waits inside the document, outside its
        # state vector.)
        complete = not stored or holds(self.state_vector(), contents.clocks)
        return UpdateApplied(revision, title_changed, self.changes != changes, complete)

    def _check_update(self, update: bytes, contents: UpdateContents) -> None:
        """Refuse, before it is applied, an update the note cannot take.

        NUL (PostgreSQL text cannot hold it); a change between the halves of a surrogate pair
        (see ``notes.collab.yupdate``); growth past ``max_length``: the update's strings bound
        it, and only an update that could cross the limit is tried on a copy of the document.
        """
        if any("\x00" in text for _, text in contents.strings):
            raise BadUpdate("text may not contain NUL characters")
        if self._pairs.split_by(contents):
            raise SplitsCharacter("the update inserts or deletes inside a character (between "
                                  "the two UTF-16 halves of a surrogate pair)")
        growth = sum(len(text) for _, text in contents.strings)
        if len(self._text) + growth <= self.max_length:
            return
        probe = Doc()
        try:
            probe.apply_update(self.encode_state())
            probe.apply_update(update)
        except ValueError as error:
            raise BadUpdate(f"undecodable update: {error}") from None
        self._check_length(len(str(probe.get(TEXT_NAME, type=Text))))

    def _on_content_event(self, event: TextEvent) -> None:
        self._received_content.append(event.delta)

    def _on_title_event(self, event: TextEvent) -> None:
        self._received_title = True

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


def load_client_id(note_id: uuid.UUID) -> int:
    """The Yjs client id that writes a note's stored text into a document built at load.

    Derived from the note, 32 bits like the ids Yjs clients pick at random.
    """
    return int.from_bytes(hashlib.blake2b(note_id.bytes, digest_size=4).digest(), "big")


def _load(state: bytes | None, content: str | None, title: str | None,
          client_id: int | None) -> tuple[Doc, bool]:
    """The document of ``state`` holding ``content`` and ``title``; whether content was written."""
    base = Doc() if client_id is None else Doc(client_id=client_id)
    if state is not None:
        base.apply_update(state)
    content_written = _reconcile(base, TEXT_NAME, content)
    _reconcile(base, TITLE_NAME, title)
    if client_id is None:
        return base, content_written
    # The document goes on with a client id of its own: the load id writes nothing else.
    doc = Doc()
    doc.apply_update(base.get_update())
    return doc, content_written


def _reconcile(doc: Doc, name: str, wanted: str | None) -> bool:
    text = doc.get(name, type=Text)
    current = str(text)
    if wanted is None or wanted == current:
        return False
    _write_delta(doc, text, current, deltas.diff(current, wanted))
    return True


def _write_delta(doc: Doc, target: Text, old: str, delta: Delta) -> bool:
    """Apply a code-point delta (fitting ``old``, the target's text) to a byte-indexed Text, in
    one transaction; True if it inserted characters outside the BMP."""
    ascii_only = old.isascii()
    astral = False
    pos = 0  # code points into the old text
    offset = 0  # bytes into the Text as edited so far
    with doc.transaction():
        for op in delta:
            if "insert" in op:
                text = op["insert"]
                target.insert(offset, text)
                offset += _utf8_len(text)
                astral = astral or _has_astral(text)
                continue
            count = op.get("retain") or op["delete"]
            size = count if ascii_only else _utf8_len(old[pos : pos + count])
            if "delete" in op:
                del target[offset : offset + size]
            else:
                offset += size
            pos += count
    return astral


def _code_point_delta(old: str, byte_delta: list[dict]) -> Delta | None:
    """A pycrdt text delta (UTF-8 byte counts) on ``old`` as a code-point delta.

    None when the delta holds something that is not plain text (an embed), which the caller then
    works out by diffing instead.
    """
    encoded = None if old.isascii() else old.encode("utf-8")
    ops: Delta = []
    offset = 0  # bytes into old
    for op in byte_delta:
        if "insert" in op:
            if not isinstance(op["insert"], str):
                return None
            ops.append({"insert": op["insert"]})
            continue
        kind = "retain" if "retain" in op else "delete"
        size = op[kind]
        count = size if encoded is None else len(encoded[offset : offset + size].decode("utf-8"))
        offset += size
        ops.append({kind: count})
    return deltas.normalize(ops)


def _received_delta(old: str, received: list[list[dict]], new: str) -> Delta:
    """The code-point delta from ``old`` to ``new`` (the ``Text`` itself) that an update made.

    pycrdt reports one event per text per transaction, and an update is applied in one: its
    byte delta, converted, is the answer. Anything else (several events, an embed, a delta that
    does not lead to ``new``) is worked out by diffing, so the mirror never drifts.
    """
    if len(received) == 1:
        delta = _code_point_delta(old, received[0])
        try:
            if delta is not None and deltas.apply_delta(old, delta) == new:
                return delta
        except DeltaError:
            pass
    return deltas.diff(old, new)


def _merged(note_id: uuid.UUID, stored_state: bytes | None, content: str, title: str,
            updates: list[bytes]) -> Doc:
    doc, _ = _load(stored_state, content, title, load_client_id(note_id))
    for update in updates:
        doc.apply_update(update)
    return doc


def merge_snapshot(note_id: uuid.UUID, stored_state: bytes | None, content: str, title: str,
                   updates: list[bytes]) -> tuple[bytes, str, str]:
    """The snapshot (``stored_state`` holding ``content`` and ``title``, as a load makes it) with
    ``updates`` applied: (Yjs state, content, title).

    ``updates`` come in log order, which is causal: a process can build on an update only once
    it was committed, so after it got its id. Applied one at a time: merging them first
    (``merge_updates``) costs time quadratic in their number.
    """
    doc = _merged(note_id, stored_state, content, title, updates)
    return (doc.get_update(), str(doc.get(TEXT_NAME, type=Text)),
            str(doc.get(TITLE_NAME, type=Text)))


def missing_from_snapshot(note_id: uuid.UUID, stored_state: bytes | None, content: str,
                          title: str, updates: list[bytes], state_vector: bytes) -> bytes | None:
    """What a document at ``state_vector`` lacks of the snapshot with ``updates`` applied (see
    ``merge_snapshot``); None: nothing."""
    update = _merged(note_id, stored_state, content, title, updates).get_update(state_vector)
    return None if update == EMPTY_UPDATE else update


def holds(state_vector: bytes, clocks: dict[int, int]) -> bool:
    """Does a document at ``state_vector`` hold every client's items up to ``clocks``?"""
    have = decode_state_vector(state_vector)
    return all(have.get(client, 0) >= clock for client, clock in clocks.items())


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
