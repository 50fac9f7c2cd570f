"""Version history and the trash: one named function per action, between the routes and the
store/hub (like ``notes.use_cases`` for the notes themselves)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import difflib
import logging
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from notes.collab.access import Role
from notes.collab.delta import Delta, diff
from notes.collab.hub import Hub
from notes.collab.text import field_problem
from notes.store.queries import NoteStore, PageKey, StoredNote, StoredVersion, TrashedNote
from notes.use_cases import (
    InvalidCursor,
    InvalidNote,
    NoteLimits,
    NoteNotFound,
    read_note,
    update_note,
)

log = logging.getLogger(__name__)

MAX_LABEL = 100  # code points in a version's name


class VersionNotFound(LookupError):
    pass


@dataclass(frozen=True)
class VersionDiff:
    """What changed from version ``source`` to ``target`` (None: the current text)."""

    source: StoredVersion
    target: int | None
    title_from: str
    title_to: str
    delta: Delta  # turns the version's content into the target's (code points)
    unified: str  # the same as a unified diff of lines


@dataclass(frozen=True)
class TrashEntry:
    note: TrashedNote
    purge_at: datetime


# --- cursors ---------------------------------------------------------------------------------


def _encode(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError) as error:
        raise InvalidCursor("the cursor is not one this server gave out") from error


def _version_cursor(version: StoredVersion) -> str:
    return _encode(f"v{version.id}")


def _before_version(cursor: str | None) -> int | None:
    if not cursor:
        return None
    raw = _decode(cursor)
    if not (raw.startswith("v") and raw[1:].isdigit() and len(raw) < 20):
        raise InvalidCursor("the cursor is not one this server gave out")
    return int(raw[1:])


def _trash_cursor(note: TrashedNote) -> str:
    return _encode(f"{note.deleted_at.isoformat()}|{note.id}")


def _after_trashed(cursor: str | None) -> PageKey | None:
    if not cursor:
        return None
    try:
        when, note_id = _decode(cursor).split("|")
        key = PageKey(datetime.fromisoformat(when), uuid.UUID(note_id))
    except ValueError as error:
        raise InvalidCursor("the cursor is not one this server gave out") from error
    if key.updated_at.tzinfo is None:
        raise InvalidCursor("the cursor is not one this server gave out")
    return key


# --- versions --------------------------------------------------------------------------------


async def list_versions(store: NoteStore, limits: NoteLimits, note_id: uuid.UUID, *,
                        limit: int | None, cursor: str | None
                        ) -> tuple[list[StoredVersion], str | None]:
    """A page of the note's versions, newest first."""
    before = _before_version(cursor)
    if not await store.is_live(note_id):
        raise NoteNotFound(note_id)
    size = limits.page_size if limit is None else limit
    versions = await store.versions(note_id, limit=size + 1, before=before)
    next_cursor = _version_cursor(versions[size - 1]) if len(versions) > size else None
    return versions[:size], next_cursor


async def read_version(store: NoteStore, note_id: uuid.UUID, version_id: int) -> StoredVersion:
    version = await store.version(note_id, version_id)
    if version is None:
        if not await store.is_live(note_id):
            raise NoteNotFound(note_id)
        raise VersionNotFound(version_id)
    return version


def unified_diff(old: str, new: str, old_name: str, new_name: str) -> str:
    """A unified diff of lines; a missing newline at the end is marked as ``diff`` does."""
    lines = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                 old_name, new_name)
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                   for line in lines)


async def diff_version(store: NoteStore, hub: Hub, note_id: uuid.UUID, version_id: int,
                       to: int | None) -> VersionDiff:
    """The changes from a version to another (``to``) or to the note's current (live) text."""
    source = await read_version(store, note_id, version_id)
    if to is None:
        current = await read_note(store, hub, note_id)
        title, content, target_name = current.title, current.content, "current"
    else:
        target = await read_version(store, note_id, to)
        title, content, target_name = target.title, target.content, f"version {to}"
    assert source.content is not None and content is not None
    old = source.content
    # (difflib is pure Python: a large note's diff should not stall the other requests)
    delta, unified = await asyncio.to_thread(
        lambda: (diff(old, content), unified_diff(old, content, f"version {version_id}",
                                                  target_name)))
    return VersionDiff(source, to, source.title, title, delta, unified)


def _check_label(label: str) -> None:
    problem = field_problem(label, MAX_LABEL)
    if problem is None and not label.strip():
        problem = ("empty", "must not be empty")
    if problem:
        raise InvalidNote([{"loc": ["label"], "msg": problem[1], "type": problem[0]}])


async def name_version(store: NoteStore, hub: Hub, note_id: uuid.UUID, label: str, *,
                       author: str | None = None) -> StoredVersion:
    """Name the note's current text (saved first if it is open with unsaved changes)."""
    _check_label(label)
    room = hub.get(note_id)
    if room is not None:
        await hub.flush(room)
    note = await store.get(note_id)
    if note is None:
        raise NoteNotFound(note_id)
    return await store.name_version(note, label, [author] if author else [])


async def restore_version(store: NoteStore, hub: Hub, limits: NoteLimits, note_id: uuid.UUID,
                          version_id: int, *, author: str | None = None,
                          role: Role | None = None) -> StoredNote:
    """The note's title and content become the version's: applied to the live note as a
    minimal diff (live editors see an edit, nobody reloads) and saved, which records the
    restored text as a new version."""
    version = await read_version(store, note_id, version_id)
    return await update_note(store, hub, limits, note_id, title=version.title,
                             content=version.content, if_match=None, role=role, author=author)


# --- the trash -------------------------------------------------------------------------------


async def list_trash(store: NoteStore, limits: NoteLimits, *, owner_id: uuid.UUID | None,
                     limit: int | None, cursor: str | None, trash_days: float
                     ) -> tuple[list[TrashEntry], str | None]:
    """A page of the trash of ``owner_id`` (None: everyone's, accounts off), the most recently
    trashed first, each with when it will be purged."""
    after = _after_trashed(cursor)
    size = limits.page_size if limit is None else limit
    notes = await store.list_trash(owner_id=owner_id, limit=size + 1, after=after)
    next_cursor = _trash_cursor(notes[size - 1]) if len(notes) > size else None
    keep = timedelta(days=trash_days)
    return [TrashEntry(note, note.deleted_at + keep) for note in notes[:size]], next_cursor


async def _own_trashed(store: NoteStore, note_id: uuid.UUID, owner_id: uuid.UUID | None
                       ) -> TrashedNote:
    """The trashed note if it is ``owner_id``'s (None: accounts off, anyone's)."""
    note = await store.trashed(note_id)
    if note is None or (owner_id is not None and note.owner_id != owner_id):
        raise NoteNotFound(note_id)
    return note


async def restore_from_trash(store: NoteStore, note_id: uuid.UUID, *,
                             owner_id: uuid.UUID | None) -> StoredNote:
    """Bring a trashed note back with its history, shares and links."""
    await _own_trashed(store, note_id, owner_id)
    note = await store.untrash(note_id)
    if note is None:
        raise NoteNotFound(note_id)
    return replace(await store.get(note_id) or note, role=Role.OWNER.value)


async def delete_forever(store: NoteStore, note_id: uuid.UUID, *,
                         owner_id: uuid.UUID | None) -> None:
    await _own_trashed(store, note_id, owner_id)
    if not await store.delete_trashed(note_id):
        raise NoteNotFound(note_id)


async def purge_trash_forever(store: NoteStore, *, trash_days: float, interval: float) -> None:
    """The background task: every ``interval`` seconds, delete for good the notes trashed more
    than ``trash_days`` ago."""
    while True:
        try:
            purged = await store.purge_trash(trash_days * 86400)
            if purged:
                log.info("purged %d notes from the trash", len(purged))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("purging the trash failed")
        await asyncio.sleep(interval)


__all__ = [
    "MAX_LABEL", "TrashEntry", "VersionDiff", "VersionNotFound", "delete_forever",
    "diff_version", "list_trash", "list_versions", "name_version", "purge_trash_forever",
    "read_version", "restore_from_trash", "restore_version", "unified_diff",
]
