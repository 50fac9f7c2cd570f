"""NoteStore: the one small interface between notes and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Uuid,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.exc import DataError, IntegrityError

from notes.collab.document import merge_snapshot
from notes.collab.journal import LogEntry
from notes.collab.saver import SaveRejected
from notes.collab.versions import THINNING, VersionAge, versions_to_drop
from notes.store.accounts import (
    CREDENTIAL_FIELDS,
    CREDENTIAL_TABLES,
    StoredCredential,
    stored_credential,
)
from notes.store.database import Statements
from notes.store.models import SEARCH_CONFIG, Note, NoteUpdate, NoteVersion, Share

notes_table = Note.__table__
log_table = NoteUpdate.__table__
shares_table = Share.__table__
versions_table = NoteVersion.__table__
KEPT_REFS = 1000  # refs of compacted updates kept with the snapshot

# A merge of the snapshot with the replica being saved: (stored Yjs state, content, title, the
# log's updates) -> (Yjs state, content, title) to store.
Merge = Callable[[bytes | None, str, str, list[bytes]], tuple[bytes, str, str]]
_PUBLIC_COLUMNS = (
    notes_table.c.id,
    notes_table.c.title,
    notes_table.c.content,
    notes_table.c.rev,
    notes_table.c.version,
    notes_table.c.created_at,
    notes_table.c.updated_at,
    # (as text: SQLAlchemy does not correlate a subquery in an INSERT's RETURNING)
    literal_column("(SELECT username FROM users WHERE users.id = notes.owner_id)")
    .label("owner"),
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
    owner: str | None = None  # the owner's username (None: nobody's, made with NOTES_AUTH=off)
    epoch: str | None = None  # the live copy's revision numbering, when answered live
    role: str | None = None  # the caller's role, when answered to one


@dataclass(frozen=True)
class LiveState:
    """What a live document loads from: the snapshot (the stored note and its Yjs state, None if
    never live) and the log's updates since, in commit order, with the refs of both."""

    note: StoredNote
    yjs_state: bytes | None
    log: list[bytes] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StoredVersion:
    """A note's text as one save left it (``content`` only when asked for)."""

    id: int
    note_id: uuid.UUID
    created_at: datetime
    rev: int
    title: str
    length: int  # code points of the content
    authors: list[str]
    label: str | None
    content: str | None = None


@dataclass(frozen=True)
class TrashedNote:
    id: uuid.UUID
    title: str
    owner_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime


@dataclass(frozen=True)
class PageKey:
    """Where a page of the newest-updated-first listing starts (keyset pagination)."""

    updated_at: datetime
    id: uuid.UUID


def _stored(row) -> StoredNote:
    return StoredNote(**{column.name: row._mapping[column.name] for column in _PUBLIC_COLUMNS})


def _version(row) -> StoredVersion:
    return StoredVersion(row.id, row.note_id, row.created_at, row.rev, row.title, row.length,
                         list(row.authors), row.label, getattr(row, "content", None))


def _trashed(row) -> TrashedNote:
    return TrashedNote(row.id, row.title, row.owner_id, row.created_at, row.updated_at,
                       row.deleted_at)


_READER = bindparam("reader", type_=Uuid)
# The reader's share of each note (a left join: their own notes have none).
_READERS_SHARE = and_(shares_table.c.note_id == notes_table.c.id,
                      shares_table.c.user_id == _READER)


def _listing(*, search: bool, paged: bool, reader: bool):
    """``reader``: only the notes the user ``reader`` may read, with their role (else every
    note, as its owner: accounts are off)."""
    if reader:
        role = case((notes_table.c.owner_id == _READER, "owner"), else_=shares_table.c.role)
        statement = (
            select(*_PUBLIC_COLUMNS, role.label("role"))
            .select_from(notes_table.outerjoin(shares_table, _READERS_SHARE))
            .where(or_(notes_table.c.owner_id == _READER, shares_table.c.user_id.is_not(None)))
        )
    else:
        statement = select(*_PUBLIC_COLUMNS, literal("owner").label("role"))
    statement = statement.where(notes_table.c.deleted_at.is_(None)).order_by(
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
# A note in the trash is not found by any note route (its row, log and history stay).
_LIVE_BY_ID = and_(_BY_ID, notes_table.c.deleted_at.is_(None))
_PING = text("SELECT 1")
_CREATE = (
    insert(notes_table)
    .values(id=bindparam("new_id"), title=bindparam("new_title"),
            content=bindparam("new_content"), owner_id=bindparam("new_owner_id", type_=Uuid))
    .returning(*_PUBLIC_COLUMNS)
)
_LOG_OF_NOTE = log_table.c.note_id == notes_table.c.id
# The hot reads (``Statements._hot``: asyncpg, prepared): a note outside the trash, whether its
# log has updates, and with ``_GET_AS`` the reader's role in the same statement, found only if
# they may read it (they own it or it is shared with them).
_NOTE_FIELDS = (
    "n.id, n.title, n.content, n.rev, n.version, n.created_at, n.updated_at,"
    " (SELECT username FROM users WHERE users.id = n.owner_id) AS owner,"
    " EXISTS (SELECT 1 FROM note_updates l WHERE l.note_id = n.id) AS has_log"
)
_GET = f"SELECT {_NOTE_FIELDS} FROM notes n WHERE n.id = $1 AND n.deleted_at IS NULL"


def _note_as(note: str, reader: str) -> str:
    """The note ``note`` with the role of the user ``reader`` (SQL expressions), found only if
    they may read it."""
    return (
        f"SELECT {_NOTE_FIELDS}, CASE WHEN n.owner_id = {reader} THEN 'owner' ELSE s.role END"
        f" AS role FROM notes n LEFT JOIN shares s ON s.note_id = n.id AND s.user_id = {reader}"
        f" WHERE n.id = {note} AND n.deleted_at IS NULL"
        f" AND (n.owner_id = {reader} OR s.user_id IS NOT NULL)"
    )


_GET_AS = _note_as("$1", "$2")
# A request's two reads in one round trip: its credential (a session or an API token) with the
# user, and the note as ``_GET_AS`` finds it for that user (NULLs: not theirs to read, or none).
_GET_WITH_CREDENTIAL = {
    kind: (
        f"SELECT {CREDENTIAL_FIELDS[kind]}, note.* FROM {table} c"
        " JOIN users u ON u.id = c.user_id"
        f" LEFT JOIN LATERAL ({_note_as('$2', 'u.id')}) note ON true WHERE c.id = $1"
    )
    for kind, (table, _) in CREDENTIAL_TABLES.items()
}
# One statement, so one snapshot: a compaction between reading the row and its log cannot hide
# updates from both.
_LOAD_LIVE = select(
    *_PUBLIC_COLUMNS, notes_table.c.yjs_state, notes_table.c.refs,
    select(func.array_agg(aggregate_order_by(log_table.c.update, log_table.c.id)))
    .where(_LOG_OF_NOTE).scalar_subquery().label("log"),
    select(func.array_agg(aggregate_order_by(log_table.c.ref, log_table.c.id)))
    .where(_LOG_OF_NOTE, log_table.c.ref.is_not(None)).scalar_subquery().label("log_refs"),
).where(_LIVE_BY_ID)
_LOCK_SNAPSHOT = (
    select(notes_table.c.yjs_state, notes_table.c.content, notes_table.c.title,
           notes_table.c.refs)
    # FOR NO KEY UPDATE: the log's inserts meanwhile (their foreign key check takes a KEY SHARE
    # lock on the row) go on; another save waits.
    .where(_BY_ID).with_for_update(key_share=True)
)
_READ_LOG = (select(log_table.c.id, log_table.c.update, log_table.c.ref)
             .where(log_table.c.note_id == bindparam("note_id")).order_by(log_table.c.id))
# One array parameter, however many rows (asyncpg takes at most 32,767 parameters).
_DROP_LOG = text("DELETE FROM note_updates WHERE id = ANY(CAST(:ids AS bigint[]))")
_READ_UPDATE = select(log_table.c.update).where(log_table.c.id == bindparam("log_id"))
_STALE_LOGS = text(
    "SELECT note_id FROM note_updates GROUP BY note_id"
    " HAVING min(created_at) < clock_timestamp() - make_interval(secs => :age)"
)
_REF_STORED = text(
    "SELECT EXISTS (SELECT 1 FROM note_updates WHERE note_id = :note_id AND ref = :ref)"
    " OR COALESCE((SELECT refs ? :ref FROM notes WHERE id = :note_id), false)"
)
def _asyncpg_sql(statement) -> tuple[str, tuple[str, ...], dict]:
    """A statement as asyncpg's SQL, once: the text, its parameters' names in ``$n`` order,
    and the values of those it binds itself (literals)."""
    compiled = statement.compile(dialect=asyncpg_dialect())
    return compiled.string, tuple(compiled.positiontup), dict(compiled.params)


# (hot reads: each page of the listing and search runs on asyncpg directly)
_LISTINGS = {(search, paged, reader): _asyncpg_sql(_listing(search=search, paged=paged,
                                                            reader=reader))
             for search in (False, True) for paged in (False, True) for reader in (False, True)}
_SAVE = (
    update(notes_table)
    .where(_BY_ID)
    .values(
        title=bindparam("new_title"),
        content=bindparam("new_content"),
        rev=func.coalesce(bindparam("new_rev", type_=BigInteger), notes_table.c.rev),
        yjs_state=bindparam("new_yjs_state"),
        refs=bindparam("new_refs", type_=notes_table.c.refs.type),
        version=notes_table.c.version + 1,
        updated_at=func.clock_timestamp(),
    )
    .returning(*_PUBLIC_COLUMNS)
)
# --- versions and the trash ---------------------------------------------------------------------

_VERSION_FIELDS = ("id, note_id, created_at, rev, title, char_length(content) AS length, authors,"
                   " label")
_RECORD_VERSION = text(
    "INSERT INTO note_versions (note_id, created_at, rev, title, content, authors, label)"
    " VALUES (:note_id, clock_timestamp(), :rev, :title, :content, :authors, :label)"
    f" RETURNING {_VERSION_FIELDS}"
).bindparams(bindparam("authors", type_=versions_table.c.authors.type))
# The versions the thinning policy looks at: the newest, and those older than its first tier.
_AGING_VERSIONS = text(
    "SELECT id, created_at, label IS NOT NULL AS named FROM note_versions"
    " WHERE note_id = :note_id AND (created_at < clock_timestamp() - make_interval(secs => :age)"
    " OR id = (SELECT max(id) FROM note_versions WHERE note_id = :note_id))"
)
_NOW = text("SELECT clock_timestamp()")
_DROP_VERSIONS = text("DELETE FROM note_versions WHERE id = ANY(CAST(:ids AS bigint[]))")
_NOTE_IS_LIVE = text("SELECT EXISTS (SELECT 1 FROM notes WHERE id = :note_id"
                     " AND deleted_at IS NULL)")
_LIST_VERSIONS = text(
    f"SELECT {_VERSION_FIELDS} FROM note_versions WHERE note_id = :note_id"
    " AND (CAST(:before AS bigint) IS NULL OR id < :before) ORDER BY id DESC LIMIT :limit"
)
_READ_VERSION = text(
    f"SELECT {_VERSION_FIELDS}, content FROM note_versions v WHERE id = :version_id"
    " AND note_id = :note_id"
    " AND EXISTS (SELECT 1 FROM notes WHERE id = v.note_id AND deleted_at IS NULL)"
)
# Naming the current text: the newest version if it holds the current text and has no name yet,
# else a new version.
_NEWEST_VERSION = text(
    f"SELECT {_VERSION_FIELDS}, content FROM note_versions WHERE note_id = :note_id"
    " ORDER BY id DESC LIMIT 1"
)
_LABEL_VERSION = text(
    f"UPDATE note_versions SET label = :label WHERE id = :version_id RETURNING {_VERSION_FIELDS}"
)
_TRASH = text("UPDATE notes SET deleted_at = clock_timestamp()"
              " WHERE id = :note_id AND deleted_at IS NULL")
_TRASHED_FIELDS = "id, title, owner_id, created_at, updated_at, deleted_at"
_TRASHED = text(f"SELECT {_TRASHED_FIELDS} FROM notes WHERE id = :note_id"
                " AND deleted_at IS NOT NULL")
_LIST_TRASH = text(
    f"SELECT {_TRASHED_FIELDS} FROM notes WHERE deleted_at IS NOT NULL"
    " AND (CAST(:owner_id AS uuid) IS NULL OR owner_id = :owner_id)"
    " AND (CAST(:after_deleted_at AS timestamptz) IS NULL"
    "      OR (deleted_at, id) < (:after_deleted_at, CAST(:after_id AS uuid)))"
    " ORDER BY deleted_at DESC, id DESC LIMIT :limit"
)
_UNTRASH = (
    update(notes_table)
    .where(_BY_ID, notes_table.c.deleted_at.is_not(None))
    .values(deleted_at=None)
    .returning(*_PUBLIC_COLUMNS)
)
_DELETE_TRASHED = text("DELETE FROM notes WHERE id = :note_id AND deleted_at IS NOT NULL")
_DELETE = delete(notes_table).where(_BY_ID)
_PURGE_TRASH = text(
    "DELETE FROM notes WHERE deleted_at < clock_timestamp() - make_interval(secs => :age)"
    " RETURNING id"
)


# Notifications in the order given (volatile functions are evaluated after the sort).
_NOTIFY_ALL = ("SELECT count(pg_notify($1, payload)) FROM"
               " (SELECT payload FROM unnest($2::text[]) WITH ORDINALITY AS t(payload, n)"
               " ORDER BY n) AS ordered")
# Updates up to this many bytes travel in their notification (base64, with the other fields
# well under PostgreSQL's 8000-byte payload limit: a ref has at most 200 characters); larger
# ones by their log id.
CARRIED_UPDATE = 4800
# The group commit in one statement: insert the entries of notes that still exist, in order, and
# notify each (fields as ``notes.store.fanout.decode_payload`` reads them) unless the channel is
# ''. A data-modifying CTE always runs; ``told`` runs because the result refers to it.
_APPEND = """
WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::bytea[], $3::text[])
        WITH ORDINALITY AS t(note_id, update, ref, n)
), stored AS (
    INSERT INTO note_updates (note_id, update, ref)
    SELECT note_id, update, ref FROM input
    WHERE EXISTS (SELECT 1 FROM notes WHERE notes.id = input.note_id)
    ORDER BY n
    RETURNING id, note_id, update, ref
), told AS (
    SELECT count(pg_notify($4, json_build_object(
        'o', $5::text, 'n', note_id, 'i', id, 'r', ref,
        'u', CASE WHEN octet_length(update) <= $6
             THEN translate(encode(update, 'base64'), E'\n', '') END)::text)) AS sent
    FROM (SELECT * FROM stored ORDER BY id) AS ordered
    WHERE $4 <> ''
)
SELECT id, note_id, (SELECT sent FROM told) AS sent FROM stored ORDER BY id
"""


def _reason(error: DataError | IntegrityError) -> str:
    """The database's reason without the statement or its parameters (which hold the text)."""
    cause = error.orig.__cause__ or error.orig
    message = str(cause).splitlines()[0] if str(cause) else ""
    return f"{type(cause).__name__}: {message}"[:200]


class NoteStore(Statements):
    async def ping(self) -> None:
        await self._one(_PING)

    async def create(self, title: str, content: str, owner_id: uuid.UUID | None = None,
                     authors: Sequence[str] = ()) -> StoredNote:
        """A new note, with its text as its first version."""
        async with self.engine.begin() as connection:
            row = (await connection.execute(_CREATE, {
                "new_id": uuid.uuid4(), "new_title": title, "new_content": content,
                "new_owner_id": owner_id})).one()
            await connection.execute(_RECORD_VERSION, {
                "note_id": row.id, "rev": row.rev, "title": title, "content": content,
                "authors": list(authors), "label": None})
        return _stored(row)

    async def get(self, note_id: uuid.UUID, *, reader: uuid.UUID | None = None
                  ) -> StoredNote | None:
        """The stored note outside the trash: its snapshot, with the log's updates since merged
        in if there are any (a process acknowledged them and has not compacted them yet, or
        died). ``reader``: only if that user may read it, with their ``role`` (one statement).
        """
        if reader is None:
            row = await self._hot(_GET, note_id)
        else:
            row = await self._hot(_GET_AS, note_id, reader)
        if row is None:
            return None
        return await self._found(row, note_id, None if reader is None else row["role"])

    async def get_with_credential(self, kind: str, credential_id: uuid.UUID,
                                  note_id: uuid.UUID
                                  ) -> tuple[StoredCredential | None, StoredNote | None]:
        """The ``"session"`` or ``"token"`` by its id with its user, and the note as ``get``
        finds it for that user (``reader``), in one statement: a request's two reads in one
        round trip. The caller checks the credential before it uses the note."""
        row = await self._hot(_GET_WITH_CREDENTIAL[kind], credential_id, note_id)
        if row is None:
            return None, None
        credential = stored_credential(row)
        if row["id"] is None:
            return credential, None
        return credential, await self._found(row, note_id, row["role"])

    async def _found(self, row, note_id: uuid.UUID, role: str | None) -> StoredNote | None:
        """The note of a ``_NOTE_FIELDS`` row, with the log's updates merged in if it has any."""
        if not row["has_log"]:
            return StoredNote(row["id"], row["title"], row["content"], row["rev"],
                              row["version"], row["created_at"], row["updated_at"],
                              row["owner"], role=role)
        merged = await self.merged(note_id)
        return None if merged is None else replace(merged, role=role)

    async def merged(self, note_id: uuid.UUID) -> StoredNote | None:
        """The stored note with its log's updates merged in (None: gone)."""
        live = await self.load_live(note_id)
        if live is None:
            return None
        _, content, title = merge_snapshot(note_id, live.yjs_state, live.note.content,
                                           live.note.title, live.log)
        return replace(live.note, content=content, title=title)

    async def load_live(self, note_id: uuid.UUID) -> LiveState | None:
        row = await self._one(_LOAD_LIVE, note_id=note_id)
        if row is None:
            return None
        return LiveState(_stored(row), row.yjs_state, list(row.log or ()),
                         [*(row.refs or ()), *(row.log_refs or ())])

    async def list(
        self, *, query: str | None = None, limit: int, after: PageKey | None = None,
        reader: uuid.UUID | None = None,
    ) -> list[StoredNote]:
        """Notes, newest-updated first, with the reader's role in each; ``query`` filters by
        PostgreSQL full-text search. ``reader``: only the notes that user may read (None: all)."""
        sql, names, bound = _LISTINGS[bool(query), after is not None, reader is not None]
        params = {**bound, "limit": limit, "query": query, "reader": reader}
        if after is not None:
            params |= {"after_updated_at": after.updated_at, "after_id": after.id}
        rows = await self._hot_all(sql, *(params[name] for name in names))
        return [StoredNote(row["id"], row["title"], row["content"], row["rev"], row["version"],
                           row["created_at"], row["updated_at"], row["owner"], role=row["role"])
                for row in rows]

    async def save(
        self,
        note_id: uuid.UUID,
        *,
        rev: int | None,
        merge: Merge,
        authors: Sequence[str] = (),
    ) -> StoredNote | None:
        """Compact: store ``merge`` of the snapshot, its log and the replica as the new snapshot
        and drop the log rows merged, in one transaction; None if the note is gone. ``rev``
        None keeps the stored one.

        A save that changes the title or the content records a version (by ``authors``, who
        changed it since the last save) and thins the note's older versions
        (``notes.collab.versions``), in the same transaction.

        The snapshot row is locked while merging, so two processes saving at once each merge
        what the other stored: text is never reverted.

        ``SaveRejected`` when PostgreSQL refuses the values themselves (invalid text, a
        constraint): retrying them cannot succeed. Its message names the reason, never a value.
        """
        try:
            async with self.engine.begin() as connection:
                stored = (await connection.execute(_LOCK_SNAPSHOT, {"note_id": note_id})
                          ).one_or_none()
                if stored is None:
                    return None
                log = (await connection.execute(_READ_LOG, {"note_id": note_id})).all()
                state, content, title = merge(stored.yjs_state, stored.content, stored.title,
                                              [entry.update for entry in log])
                refs = [*(stored.refs or ()), *(entry.ref for entry in log if entry.ref)]
                row = (await connection.execute(_SAVE, {
                    "note_id": note_id, "new_title": title, "new_content": content,
                    "new_rev": rev, "new_yjs_state": state, "new_refs": refs[-KEPT_REFS:],
                })).one()
                if log:
                    await connection.execute(_DROP_LOG, {"ids": [entry.id for entry in log]})
                if (title, content) != (stored.title, stored.content):
                    await connection.execute(_RECORD_VERSION, {
                        "note_id": note_id, "rev": row.rev, "title": title, "content": content,
                        "authors": list(authors), "label": None})
                    await _thin_versions(connection, note_id)
        except (DataError, IntegrityError) as error:
            raise SaveRejected(_reason(error)) from None
        return _stored(row)

    # --- the update log -------------------------------------------------------------------------

    async def append_updates(self, entries: Sequence[LogEntry], *,
                             announce: tuple[str, str] | None = None) -> list[int | None]:
        """Store ``entries`` in the log in one statement (one commit); their ids, in order (None:
        the note was deleted meanwhile, and its entries dropped so as not to fail the others).

        ``announce`` = (channel, origin): one notification per stored entry in the same
        statement, so PostgreSQL delivers them exactly at its commit (see ``_APPEND``).
        """
        channel, origin = announce or ("", "")
        async with self.engine.connect() as connection:
            raw = (await connection.get_raw_connection()).driver_connection
            rows = await raw.fetch(
                _APPEND, [entry.note_id for entry in entries],
                [entry.update for entry in entries], [entry.ref for entry in entries],
                channel, origin, CARRIED_UPDATE)
        alive = {row["note_id"] for row in rows}
        ids = iter(row["id"] for row in rows)
        return [next(ids) if entry.note_id in alive else None for entry in entries]

    async def notify(self, channel: str, payloads: list[str]) -> None:
        """Send notifications without storing anything (one commit)."""
        async with self.engine.connect() as connection:
            raw = (await connection.get_raw_connection()).driver_connection
            await raw.execute(_NOTIFY_ALL, channel, payloads)

    async def read_update(self, log_id: int) -> bytes | None:
        """One log row's update (None: compacted away since)."""
        row = await self._one(_READ_UPDATE, log_id=log_id)
        return None if row is None else row.update

    async def stale_logs(self, age: float) -> list[uuid.UUID]:
        """Notes with log rows older than ``age`` seconds: left by a process that died, or
        whose saves fail."""
        async with self.reader.connect() as connection:
            return list((await connection.execute(_STALE_LOGS, {"age": age})).scalars())

    async def ref_stored(self, note_id: uuid.UUID, ref: str) -> bool:
        """Is an update with this client ref stored (in the log or compacted)?"""
        row = await self._one(_REF_STORED, note_id=note_id, ref=ref)
        return bool(row[0])

    async def delete(self, note_id: uuid.UUID) -> bool:
        """Delete the note for good, with its history (trashed or not)."""
        async with self.reader.connect() as connection:
            return (await connection.execute(_DELETE, {"note_id": note_id})).rowcount > 0

    # --- versions -------------------------------------------------------------------------------

    async def is_live(self, note_id: uuid.UUID) -> bool:
        """Does the note exist, outside the trash?"""
        return bool((await self._one(_NOTE_IS_LIVE, note_id=note_id))[0])

    async def versions(self, note_id: uuid.UUID, *, limit: int, before: int | None = None
                       ) -> list[StoredVersion]:
        """The note's versions, newest first (``before``: older than that version id)."""
        rows = await self._all(_LIST_VERSIONS, note_id=note_id, limit=limit, before=before)
        return [_version(row) for row in rows]

    async def version(self, note_id: uuid.UUID, version_id: int) -> StoredVersion | None:
        """One version of a note outside the trash, with its content."""
        row = await self._one(_READ_VERSION, note_id=note_id, version_id=version_id)
        return None if row is None else _version(row)

    async def name_version(self, note: StoredNote, label: str,
                           authors: Sequence[str] = ()) -> StoredVersion:
        """Name ``note``'s text (as just read): its newest version if that holds the same text
        and no name yet, else a new version holding it."""
        async with self.engine.begin() as connection:
            newest = (await connection.execute(_NEWEST_VERSION, {"note_id": note.id})
                      ).one_or_none()
            if (newest is not None and newest.label is None
                    and (newest.title, newest.content) == (note.title, note.content)):
                row = (await connection.execute(_LABEL_VERSION, {
                    "version_id": newest.id, "label": label})).one()
            else:
                row = (await connection.execute(_RECORD_VERSION, {
                    "note_id": note.id, "rev": note.rev, "title": note.title,
                    "content": note.content, "authors": list(authors), "label": label})).one()
        return _version(row)

    # --- the trash ------------------------------------------------------------------------------

    async def trash(self, note_id: uuid.UUID) -> bool:
        """Move the note to the trash (False: no such note outside it)."""
        async with self.reader.connect() as connection:
            return (await connection.execute(_TRASH, {"note_id": note_id})).rowcount > 0

    async def trashed(self, note_id: uuid.UUID) -> TrashedNote | None:
        row = await self._one(_TRASHED, note_id=note_id)
        return None if row is None else _trashed(row)

    async def list_trash(self, *, owner_id: uuid.UUID | None, limit: int,
                         after: PageKey | None = None) -> list[TrashedNote]:
        """Trashed notes, the most recently trashed first (``owner_id`` None: everyone's);
        ``after`` pages by (deleted_at, id)."""
        rows = await self._all(
            _LIST_TRASH, owner_id=owner_id, limit=limit,
            after_deleted_at=None if after is None else after.updated_at,
            after_id=None if after is None else after.id)
        return [_trashed(row) for row in rows]

    async def untrash(self, note_id: uuid.UUID) -> StoredNote | None:
        """Bring a trashed note back (None: it is not in the trash)."""
        async with self.reader.connect() as connection:
            row = (await connection.execute(_UNTRASH, {"note_id": note_id})).one_or_none()
        return None if row is None else _stored(row)

    async def delete_trashed(self, note_id: uuid.UUID) -> bool:
        async with self.reader.connect() as connection:
            return (await connection.execute(_DELETE_TRASHED, {"note_id": note_id})).rowcount > 0

    async def purge_trash(self, age: float) -> list[uuid.UUID]:
        """Delete for good the notes trashed more than ``age`` seconds ago."""
        return [row.id for row in await self._all(_PURGE_TRASH, age=age)]


async def _thin_versions(connection, note_id: uuid.UUID) -> None:
    """Drop the versions the thinning policy no longer keeps (see ``notes.collab.versions``)."""
    first = THINNING[0].until
    age = 0.0 if first is None else first.total_seconds()
    rows = (await connection.execute(_AGING_VERSIONS, {"note_id": note_id, "age": age})).all()
    if len(rows) < 2:
        return
    now = (await connection.execute(_NOW)).scalar_one()
    drop = versions_to_drop([VersionAge(row.id, row.created_at, row.named) for row in rows], now)
    if drop:
        await connection.execute(_DROP_VERSIONS, {"ids": sorted(drop)})
