"""NoteStore: the one small interface between notes and PostgreSQL."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, insert, literal_column, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncEngine

from notes.store.models import SEARCH_CONFIG, Note

notes_table = Note.__table__
_PUBLIC_COLUMNS = (
    notes_table.c.id,
    notes_table.c.title,
    notes_table.c.content,
    notes_table.c.rev,
    notes_table.c.version,
    notes_table.c.created_at,
    notes_table.c.updated_at,
)


@dataclass(frozen=True)
class StoredNote:
    id: uuid.UUID
    title: str
    content: str
    rev: int
    version: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class LiveState:
    """What a live document loads from: the stored note and its Yjs state (None if never live)."""

    note: StoredNote
    yjs_state: bytes | None
    history: list | None = None


@dataclass(frozen=True)
class PageKey:
    """Where a page of the newest-updated-first listing starts (keyset pagination)."""

    updated_at: datetime
    id: uuid.UUID


def _stored(row) -> StoredNote:
    return StoredNote(**{column.name: row._mapping[column.name] for column in _PUBLIC_COLUMNS})


class NoteStore:
    def __init__(self, engine: AsyncEngine):
        self.engine = engine

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def create(self, title: str, content: str) -> StoredNote:
        statement = (
            insert(notes_table)
            .values(id=uuid.uuid4(), title=title, content=content)
            .returning(*_PUBLIC_COLUMNS)
        )
        async with self.engine.begin() as connection:
            return _stored((await connection.execute(statement)).one())

    async def get(self, note_id: uuid.UUID) -> StoredNote | None:
        statement = select(*_PUBLIC_COLUMNS).where(notes_table.c.id == note_id)
        async with self.engine.connect() as connection:
            row = (await connection.execute(statement)).one_or_none()
        return None if row is None else _stored(row)

    async def exists(self, note_id: uuid.UUID) -> bool:
        statement = select(literal_column("1")).where(notes_table.c.id == note_id)
        async with self.engine.connect() as connection:
            return (await connection.execute(statement)).first() is not None

    async def load_live(self, note_id: uuid.UUID) -> LiveState | None:
        statement = select(
            *_PUBLIC_COLUMNS, notes_table.c.yjs_state, notes_table.c.history
        ).where(notes_table.c.id == note_id)
        async with self.engine.connect() as connection:
            row = (await connection.execute(statement)).one_or_none()
        return None if row is None else LiveState(_stored(row), row.yjs_state, row.history)

    async def list(
        self, *, query: str | None = None, limit: int, after: PageKey | None = None
    ) -> list[StoredNote]:
        """Notes, newest-updated first; ``query`` filters by PostgreSQL full-text search."""
        statement = select(*_PUBLIC_COLUMNS).order_by(
            notes_table.c.updated_at.desc(), notes_table.c.id.desc()
        )
        if query:
            matches = notes_table.c.search_vector.op("@@")(
                func.websearch_to_tsquery(literal_column(f"'{SEARCH_CONFIG}'::regconfig"), query)
            )
            statement = statement.where(matches)
        if after is not None:
            statement = statement.where(
                tuple_(notes_table.c.updated_at, notes_table.c.id)
                < tuple_(after.updated_at, after.id)
            )
        async with self.engine.connect() as connection:
            rows = (await connection.execute(statement.limit(limit))).all()
        return [_stored(row) for row in rows]

    async def save(
        self,
        note_id: uuid.UUID,
        *,
        title: str,
        content: str,
        rev: int,
        yjs_state: bytes | None,
        history: list | None = None,
    ) -> StoredNote | None:
        """Write a live note's state in one statement; None if the note is gone."""
        statement = (
            update(notes_table)
            .where(notes_table.c.id == note_id)
            .values(
                title=title,
                content=content,
                rev=rev,
                yjs_state=yjs_state,
                history=history,
                version=notes_table.c.version + 1,
                updated_at=func.clock_timestamp(),
            )
            .returning(*_PUBLIC_COLUMNS)
        )
        async with self.engine.begin() as connection:
            row = (await connection.execute(statement)).one_or_none()
        return None if row is None else _stored(row)

    async def delete(self, note_id: uuid.UUID) -> bool:
        statement = delete(notes_table).where(notes_table.c.id == note_id)
        async with self.engine.begin() as connection:
            return (await connection.execute(statement)).rowcount > 0
