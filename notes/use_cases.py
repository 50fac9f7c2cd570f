"""What the API does, one named function per action, between the HTTP routes and the store/hub."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TypeVar

from notes.collab.access import Role
from notes.collab.document import Revision, StaleRevision
from notes.collab.hub import Hub
from notes.collab.room import Room
from notes.collab.saver import SaveRejected
from notes.collab.text import field_problem
from notes.store.accounts import User
from notes.store.queries import NoteStore, PageKey, StoredNote
from notes.store.transfer import TransferStore
from notes.transfer import ExportedNote


class NoteNotFound(LookupError):
    pass


class PreconditionFailed(Exception):
    pass


class InvalidNote(ValueError):
    """Field errors, each ``{"loc": [...], "msg": ..., "type": ...}``."""

    def __init__(self, errors: list[dict]):
        super().__init__("; ".join(error["msg"] for error in errors))
        self.errors = errors


class NotYetStored(Exception):
    """A REST write was applied to the live note, but the database did not store it within
    ``STORE_WAIT`` seconds: it stays in the live note and its save task stores it later."""


T = TypeVar("T")

# Seconds a REST write waits for the database (first to answer at all, then to store the
# write) before it is answered 503: a stopped or hung database must not hang the request.
STORE_WAIT = 10.0


async def _database_answers(store: NoteStore) -> None:
    """Raise (a connection error, or TimeoutError) unless the database answers now: a write
    that could not be stored is refused before it changes anything."""
    await asyncio.wait_for(store.ping(), STORE_WAIT)


async def _stored_in_time(note_id: uuid.UUID, storing: Awaitable[T]) -> T:
    """``storing`` (a save, or the update log's commit) within ``STORE_WAIT`` seconds, else
    ``NotYetStored``: the change applied to the live note is stored later."""
    try:
        return await asyncio.wait_for(storing, STORE_WAIT)
    except asyncio.TimeoutError:
        raise NotYetStored(note_id) from None


class InvalidCursor(ValueError):
    pass


class EditTooOld(Exception):
    def __init__(self, rev: int, content: str, epoch: str,
                 reason: str = "the edit's revision is older than the history the server keeps"):
        super().__init__(reason)
        self.rev = rev
        self.content = content
        self.epoch = epoch


@dataclass(frozen=True)
class NoteLimits:
    max_title: int = 200
    max_content: int = 1_000_000
    page_size: int = 50
    max_page_size: int = 200


def etag_of(title: str, content: str, role: Role | str | None = None) -> str:
    """A strong validator that changes whenever the title, the content or the caller's role
    changes (the role is part of what the caller is shown: a 304 must not keep an old one)."""
    digest = hashlib.blake2b(digest_size=12)
    digest.update(title.encode())
    digest.update(b"\0")
    digest.update(content.encode())
    if role is not None:
        digest.update(b"\0" + Role(role).value.encode())
    return '"' + base64.urlsafe_b64encode(digest.digest()).decode() + '"'


def etag_matches(header: str, etag: str, *, weak: bool = False) -> bool:
    """``*`` or any listed tag: strong comparison for ``If-Match``, weak for ``If-None-Match``."""
    tags = [tag.strip() for tag in header.split(",")]
    if weak:
        tags = [tag.removeprefix("W/") for tag in tags]
    return "*" in tags or etag in tags


def _check_fields(limits: NoteLimits, title: str | None, content: str | None) -> None:
    errors = []
    for field, value, limit in (("title", title, limits.max_title),
                                ("content", content, limits.max_content)):
        problem = None if value is None else field_problem(value, limit)
        if problem:
            errors.append({"loc": [field], "msg": problem[1], "type": problem[0]})
    if errors:
        raise InvalidNote(errors)


def _live_view(note: StoredNote, room: Room | None, role: Role | None = None) -> StoredNote:
    if role is not None:
        note = replace(note, role=role.value)
    if room is None:
        return note
    return replace(note, title=room.title, content=room.content, rev=room.rev,
                   epoch=room.document.epoch)


# --- pagination cursors ----------------------------------------------------------------------


def encode_cursor(note: StoredNote) -> str:
    raw = f"{note.updated_at.isoformat()}|{note.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> PageKey:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, note_id = raw.split("|")
        key = PageKey(datetime.fromisoformat(when), uuid.UUID(note_id))
    except (ValueError, binascii.Error, UnicodeDecodeError) as error:
        raise InvalidCursor("the cursor is not one this server gave out") from error
    if key.updated_at.tzinfo is None:
        raise InvalidCursor("the cursor is not one this server gave out")
    return key


# --- actions ---------------------------------------------------------------------------------


async def create_note(store: NoteStore, limits: NoteLimits, title: str, content: str, *,
                      owner: User | None = None) -> StoredNote:
    """``owner`` None: nobody's (accounts are off; the next account created claims it)."""
    _check_fields(limits, title, content)
    if owner is None:
        note = await store.create(title, content)
    else:
        note = await store.create(title, content, owner.id, [owner.username])
    return replace(note, role=Role.OWNER.value)


async def read_note(store: NoteStore, hub: Hub, note_id: uuid.UUID, *,
                    role: Role | None = None, reader: uuid.UUID | None = None) -> StoredNote:
    """The note (its live text when it is open here), with ``role``; or, given ``reader``,
    only if that user may read it, with their role (looked up in the note's own statement):
    ``NoteNotFound`` otherwise, exactly as for a note that does not exist."""
    note = await store.get(note_id, reader=reader)
    if note is None:
        raise NoteNotFound(note_id)
    return _live_view(note, hub.get(note_id), role)


def live_note(hub: Hub, note: StoredNote) -> StoredNote:
    """A stored note as ``read_note`` gives it: its live text when it is open here."""
    return _live_view(note, hub.get(note.id))


async def list_notes(store: NoteStore, hub: Hub, limits: NoteLimits, *, query: str | None,
                     limit: int | None, cursor: str | None, reader: uuid.UUID | None = None
                     ) -> tuple[list[StoredNote], str | None]:
    """A page of the notes ``reader`` may read (None: all), each with their role."""
    size = limits.page_size if limit is None else limit
    after = decode_cursor(cursor) if cursor else None
    notes = await store.list(query=query or None, limit=size + 1, after=after, reader=reader)
    next_cursor = encode_cursor(notes[size - 1]) if len(notes) > size else None
    return [_live_view(note, hub.get(note.id)) for note in notes[:size]], next_cursor


async def update_note(store: NoteStore, hub: Hub, limits: NoteLimits, note_id: uuid.UUID, *,
                      title: str | None, content: str | None, if_match: str | None,
                      role: Role | None = None, author: str | None = None) -> StoredNote:
    """PUT/PATCH: applied to the live document (a minimal diff for content) and saved at once
    (a new version, by ``author``, if anything changed)."""
    _check_fields(limits, title, content)
    room = await hub.acquire(note_id)
    if room is None:
        raise NoteNotFound(note_id)
    try:
        if if_match is not None and not etag_matches(
                if_match, etag_of(room.title, room.content, role)):
            raise PreconditionFailed(note_id)
        await _database_answers(store)
        if content is not None:
            room.replace_content(content, author=author)
        if title is not None:
            room.set_title(title, author=author)
        try:
            stored = await _stored_in_time(note_id, hub.flush(room))
        except SaveRejected as refusal:
            raise InvalidNote([{"loc": [], "msg": f"the database refused the note: {refusal}",
                                "type": "rejected"}]) from None
        if stored is None:
            if room.deleted:
                raise NoteNotFound(note_id)
            stored = await store.get(note_id)
            if stored is None:
                raise NoteNotFound(note_id)
        return _live_view(stored, room, role)
    finally:
        await hub.release(room)


async def delete_note(store: NoteStore, hub: Hub, note_id: uuid.UUID, *,
                      if_match: str | None, role: Role | None = None) -> None:
    """DELETE: the note goes to the trash, saved first (with its history it can come back);
    its live sockets are told and closed."""
    if if_match is not None:
        current = await read_note(store, hub, note_id, role=role)
        if not etag_matches(if_match, etag_of(current.title, current.content, role)):
            raise PreconditionFailed(note_id)
    await _database_answers(store)
    room = hub.get(note_id)
    if room is not None:
        # (saved first, so that the trash holds its last edits; if the database stops
        # answering meanwhile, the note is not trashed: TimeoutError, 503)
        await asyncio.wait_for(hub.flush(room), STORE_WAIT)
    if not await store.trash(note_id):
        raise NoteNotFound(note_id)
    await hub.note_deleted(note_id)


async def apply_http_edit(store: NoteStore, hub: Hub, note_id: uuid.UUID, rev: int, delta: list,
                          epoch: str | None = None, *, author: str | None = None
                          ) -> tuple[Revision, str]:
    """``POST /notes/{id}/edits``: one edit with the socket's semantics (transform, broadcast);
    the revision and the epoch it counts in. ``rev`` of another numbering (``epoch``) is 409."""
    room = await hub.acquire(note_id)
    if room is None:
        raise NoteNotFound(note_id)
    try:
        current = room.document.epoch
        if epoch is not None and epoch != current:
            raise EditTooOld(room.rev, room.content, current,
                             "the edit's revision counts in another process's numbering")
        await _database_answers(store)
        try:
            revision = room.apply_edit(rev, delta, author=author)
        except StaleRevision as stale:
            raise EditTooOld(room.rev, room.content, current) from stale
        await _stored_in_time(note_id, room.stored())  # (NOTES_DURABILITY=log)
        return revision, current
    finally:
        await hub.release(room)


async def exported_notes(transfers: TransferStore, hub: Hub, owner_id: uuid.UUID | None
                         ) -> AsyncIterator[ExportedNote]:
    """Every note ``owner_id`` owns (None: everyone's) outside the trash, with the live text of
    those open in this process."""
    async for note in transfers.notes(owner_id):
        room = hub.get(note.id)
        yield note if room is None else replace(note, title=room.title, content=room.content)


__all__ = [
    "EditTooOld", "InvalidCursor", "InvalidNote", "NoteLimits", "NoteNotFound", "NotYetStored",
    "PreconditionFailed", "apply_http_edit", "create_note", "delete_note", "etag_of",
    "etag_matches", "exported_notes", "list_notes", "read_note", "update_note",
]

