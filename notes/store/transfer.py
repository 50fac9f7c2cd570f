"""TransferStore: reading notes out for an export, and storing an export's notes in one go."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notes.store.database import Statements
from notes.store.queries import NoteStore
from notes.transfer import ExportedNote

_PAGE = text(
    "SELECT id, title, content, created_at, updated_at,"
    " EXISTS (SELECT 1 FROM note_updates WHERE note_id = notes.id) AS has_log"
    " FROM notes WHERE deleted_at IS NULL"
    " AND (CAST(:owner_id AS uuid) IS NULL OR owner_id = :owner_id)"
    " AND (CAST(:after AS uuid) IS NULL OR id > :after)"
    " ORDER BY id LIMIT :limit"
)
# One statement per batch: the notes not here yet (by id), each with its text as its first
# version (dated when it was last updated, credited to ``$7``).
_IMPORT = """
WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[],
                         $5::timestamptz[]) AS t(id, title, content, created_at, updated_at)
), made AS (
    INSERT INTO notes (id, title, content, created_at, updated_at, owner_id)
    SELECT id, title, content, created_at, updated_at, $6::uuid FROM input
    ON CONFLICT (id) DO NOTHING
    RETURNING id, title, content, updated_at, rev
), versioned AS (
    INSERT INTO note_versions (note_id, created_at, rev, title, content, authors)
    SELECT id, updated_at, rev, title, content, $7::text[] FROM made
)
SELECT count(*) FROM made
"""
EXPORT_PAGE = 100  # notes read from the database at once for an export
BATCH_NOTES = 200  # an import's notes in one statement, or fewer that hold BATCH_CHARACTERS
BATCH_CHARACTERS = 8 * 1024 * 1024


@dataclass(frozen=True)
class Imported:
    imported: int  # notes stored
    skipped: int  # notes already here (by id), left as they are


class TransferStore(Statements):
    def __init__(self, engine: AsyncEngine):
        super().__init__(engine)
        self._notes = NoteStore(engine)

    async def notes(self, owner_id: uuid.UUID | None) -> AsyncIterator[ExportedNote]:
        """Every note outside the trash (``owner_id`` None: everyone's), by id, read a page at
        a time, with the update log's acknowledged edits merged in."""
        after = None
        while rows := await self._all(_PAGE, owner_id=owner_id, after=after, limit=EXPORT_PAGE):
            for row in rows:
                title, content = row.title, row.content
                if row.has_log and (merged := await self._notes.merged(row.id)) is not None:
                    title, content = merged.title, merged.content
                yield ExportedNote(row.id, title, content, row.created_at, row.updated_at)
            after = rows[-1].id

    async def import_notes(self, notes: Iterable[ExportedNote], *,
                           owner_id: uuid.UUID | None, authors: list[str]) -> Imported:
        """Store the notes not here yet, in one transaction: an error from ``notes`` (an
        invalid file further on) stores none of them."""
        imported = total = 0
        async with self.engine.begin() as connection:
            raw = (await connection.get_raw_connection()).driver_connection
            batch: list[ExportedNote] = []
            size = 0

            async def store() -> int:
                columns = list(zip(*((note.id, note.title, note.content, note.created_at,
                                      note.updated_at) for note in batch), strict=True))
                return await raw.fetchval(_IMPORT, *map(list, columns), owner_id, authors)

            for note in notes:
                batch.append(note)
                total += 1
                size += len(note.content)
                if len(batch) >= BATCH_NOTES or size >= BATCH_CHARACTERS:
                    imported += await store()
                    batch, size = [], 0
            if batch:
                imported += await store()
        return Imported(imported, total - imported)
