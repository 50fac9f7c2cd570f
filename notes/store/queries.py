"""NoteStore: the one small interface between notes and PostgreSQL."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from notes.collab.saver import SaveRejected
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


def _listing(*, search: bool, paged: bool):
    statement = select(*_PUBLIC_COLUMNS).order_by(
        notes_table.c.updated_at.desc(), notes_table.c.id.desc()
    ).limit(bindparam("limit"))
    if search:
        statement = statement.where(notes_table.c.search_vector.op("@@")(
            func.websearch_to_tsquery(literal_column(f"'{SEARCH_CONFIG}'::regconfig"),
                                      bindparam("query"))
        ))
    if paged:
        statement = statement.where(
            tuple_(notes_table.c.updated_at, notes_table.c.id)
            < tuple_(bindparam("after_updated_at"), bindparam("after_id"))
        )
    return statement


# Statements are built once: building and cache-keying a statement per call costs as much as the
# database round trip.
# Bound names differ from column names: insert/update reserve those.
_BY_ID = notes_table.c.id == bindparam("note_id")
_PING = text("SELECT 1")
_CREATE = (
    insert(notes_table)
    .values(id=bindparam("new_id"), title=bindparam("new_title"),
            content=bindparam("new_content"))
    .returning(*_PUBLIC_COLUMNS)
)
_GET = select(*_PUBLIC_COLUMNS).where(_BY_ID)
_LOAD_LIVE = select(*_PUBLIC_COLUMNS, notes_table.c.yjs_state, notes_table.c.history).where(_BY_ID)
_LISTINGS = {(search, paged): _listing(search=search, paged=paged)
             for search in (False, True) for paged in (False, True)}
_SAVE = (
    update(notes_table)
    .where(_BY_ID)
    .values(
        title=bindparam("new_title"),
        content=bindparam("new_content"),
        rev=bindparam("new_rev"),
        yjs_state=bindparam("new_yjs_state"),
        history=bindparam("new_history", type_=notes_table.c.history.type),
        version=notes_table.c.version + 1,
        updated_at=func.clock_timestamp(),
    )
    .returning(*_PUBLIC_COLUMNS)
)
_DELETE = delete(notes_table).where(_BY_ID)


def _reason(error: DataError | IntegrityError) -> str:
    """The database's reason without the statement or its parameters (which hold the text)."""
    cause = error.orig.__cause__ or error.orig
    message = str(cause).splitlines()[0] if str(cause) else ""
    return f"{type(cause).__name__}: {message}"[:200]


class NoteStore:
    def __init__(self, engine: AsyncEngine):
        self.engine = engine
        # Single statements need no transaction: reads skip BEGIN/ROLLBACK round trips.
        self.reader = engine.execution_options(isolation_level="AUTOCOMMIT")

    async def _one(self, statement, **params):
        async with self.reader.connect() as connection:
            return (await connection.execute(statement, params)).one_or_none()

    async def ping(self) -> None:
        await self._one(_PING)

    async def create(self, title: str, content: str) -> StoredNote:
        row = await self._one(_CREATE, new_id=uuid.uuid4(), new_title=title, new_content=content)
        return _stored(row)

    async def get(self, note_id: uuid.UUID) -> StoredNote | None:
        row = await self._one(_GET, note_id=note_id)
        return None if row is None else _stored(row)

    async def load_live(self, note_id: uuid.UUID) -> LiveState | None:
        row = await self._one(_LOAD_LIVE, note_id=note_id)
        return None if row is None else LiveState(_stored(row), row.yjs_state, row.history)

    async def list(
        self, *, query: str | None = None, limit: int, after: PageKey | None = None
    ) -> list[StoredNote]:
        """Notes, newest-updated first; ``query`` filters by PostgreSQL full-text search."""
        statement = _LISTINGS[bool(query), after is not None]
        params = {"limit": limit, "query": query}
        if after is not None:
            params |= {"after_updated_at": after.updated_at, "after_id": after.id}
        async with self.reader.connect() as connection:
            rows = (await connection.execute(statement, params)).all()
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
        """Write a live note's state in one statement; None if the note is gone.

        ``SaveRejected`` when PostgreSQL refuses the values themselves (invalid text, a
        constraint): retrying them cannot succeed. Its message names the reason, never a value.
        """
        try:
            row = await self._one(_SAVE, note_id=note_id, new_title=title, new_content=content,
                                  new_rev=rev, new_yjs_state=yjs_state, new_history=history)
        except (DataError, IntegrityError) as error:
            raise SaveRejected(_reason(error)) from None
        return None if row is None else _stored(row)

    async def delete(self, note_id: uuid.UUID) -> bool:
        async with self.reader.connect() as connection:
            return (await connection.execute(_DELETE, {"note_id": note_id})).rowcount > 0
