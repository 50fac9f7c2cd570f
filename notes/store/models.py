"""The notes table and its update log. The schema itself is made by the Alembic migrations,
never by ``create_all``."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Computed,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    LargeBinary,
    MetaData,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR
from sqlalchemy.orm import DeclarativeBase, Mapped, deferred, mapped_column

# Only the first SEARCH_PREFIX code points of title and content are indexed for full-text search:
# a tsvector is limited to 1 MB, and notes may be larger.
SEARCH_PREFIX = 100_000
SEARCH_CONFIG = "english"
SEARCH_DOCUMENT_SQL = (
    f"to_tsvector('{SEARCH_CONFIG}'::regconfig, left(title || ' ' || content, {SEARCH_PREFIX}))"
)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Note(Base):
    __tablename__ = "notes"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    title: Mapped[str] = mapped_column(Text, nullable=False)
    content: Mapped[str] = mapped_column(Text, nullable=False)
    # The snapshot's Yjs (pycrdt) state: its CRDT history, so that every process can merge.
    yjs_state: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # The client refs of the updates compacted into the snapshot (the newest last), so that an
    # edit resent after a reconnect is recognised and not applied twice.
    refs: Mapped[list | None] = mapped_column(JSONB, nullable=True)
    # Who created it (None: created while NOTES_AUTH=off, and claimed by the next new account).
    owner_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE", name="fk_notes_owner_id_users"),
        nullable=True,
    )
    # The live-editing revision of the process that saved last (revisions are per process).
    rev: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("0"))
    # Changes on every write of the row.
    version: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("1"))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    # Set while the note is in its owner's trash (hidden from every note route).
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    # Full-text search document, kept by PostgreSQL itself (a stored generated column).
    search_vector: Mapped[str] = deferred(
        mapped_column(TSVECTOR, Computed(SEARCH_DOCUMENT_SQL, persisted=True))
    )

    __table_args__ = (
        Index("ix_notes_updated_at_id", "updated_at", "id"),
        Index("ix_notes_search_vector", "search_vector", postgresql_using="gin"),
        Index("ix_notes_owner_id_updated_at_id", "owner_id", "updated_at", "id"),
        Index("ix_notes_deleted_at", "deleted_at", postgresql_where=text("deleted_at IS NOT NULL")),
    )


class NoteUpdate(Base):
    """One stored Yjs update of a note, not yet compacted into the snapshot (the notes row)."""

    __tablename__ = "note_updates"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    note_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("notes.id", ondelete="CASCADE", name="fk_note_updates_note_id_notes"),
        nullable=False,
    )
    update: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    ref: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

    __table_args__ = (Index("ix_note_updates_note_id_id", "note_id", "id"),)


class NoteVersion(Base):
    """A note's title and content as one save left them (see ``notes.collab.versions``)."""

    __tablename__ = "note_versions"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    note_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("notes.id", ondelete="CASCADE", name="fk_note_versions_note_id_notes"),
        nullable=False,
    )
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    rev: Mapped[int] = mapped_column(BigInteger, nullable=False)
    title: Mapped[str] = mapped_column(Text, nullable=False)
    content: Mapped[str] = mapped_column(Text, nullable=False)
    # Who changed the note since the version before (usernames, or live clients' names).
    authors: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False,
                                               server_default="{}")
    label: Mapped[str | None] = mapped_column(Text, nullable=True)  # named: kept forever

    __table_args__ = (Index("ix_note_versions_note_id_id", "note_id", "id"),)


# --- accounts ------------------------------------------------------------------------------------


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    username: Mapped[str] = mapped_column(Text, nullable=False)
    password_hash: Mapped[str] = mapped_column(Text, nullable=False)  # argon2id, a PHC string
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

    __table_args__ = (UniqueConstraint("username", name="uq_users_username"),)


class _Credential:
    """A session or an API token: its public id and only a hash of its secret."""

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    secret_hash: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class Session(_Credential, Base):
    """A browser's sign-in (the session cookie)."""

    __tablename__ = "sessions"

    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE", name="fk_sessions_user_id_users"),
        nullable=False, index=True,
    )
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class ApiToken(_Credential, Base):
    """A named token for scripts and editors (``Authorization: Bearer``, ``?token=``)."""

    __tablename__ = "api_tokens"

    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE", name="fk_api_tokens_user_id_users"),
        nullable=False, index=True,
    )
    name: Mapped[str] = mapped_column(Text, nullable=False)


class Share(Base):
    """A user's role on someone else's note."""

    __tablename__ = "shares"

    note_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("notes.id", ondelete="CASCADE", name="fk_shares_note_id_notes"),
        primary_key=True,
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE", name="fk_shares_user_id_users"),
        primary_key=True, index=True,
    )
    role: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

    __table_args__ = (CheckConstraint("role IN ('viewer', 'editor')", name="ck_shares_role"),)


class ShareLink(_Credential, Base):
    """A link that opens one note, as viewer or editor, to whoever holds it (no account)."""

    __tablename__ = "share_links"

    note_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("notes.id", ondelete="CASCADE", name="fk_share_links_note_id_notes"),
        nullable=False, index=True,
    )
    role: Mapped[str] = mapped_column(Text, nullable=False)

    __table_args__ = (CheckConstraint("role IN ('viewer', 'editor')",
                                      name="ck_share_links_role"),)
