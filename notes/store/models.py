"""The notes table. The schema itself is made by the Alembic migrations, never by ``create_all``."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Computed,
    DateTime,
    Index,
    LargeBinary,
    MetaData,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR
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
    # The live document's Yjs (pycrdt) state, so its history survives and other engines can merge.
    yjs_state: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # The last revisions of the live document ([rev, delta, client, ref] each), so that clients
    # reconnecting after a restart still get what they missed and a resent edit is recognised.
    history: Mapped[list | None] = mapped_column(JSONB, nullable=True)
    # The live-editing revision the content is at; it continues across restarts.
    rev: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("0"))
    # Changes on every write of the row.
    version: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("1"))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

    # Full-text search document, kept by PostgreSQL itself (a stored generated column).
    search_vector: Mapped[str] = deferred(
        mapped_column(TSVECTOR, Computed(SEARCH_DOCUMENT_SQL, persisted=True))
    )

    __table_args__ = (
        Index("ix_notes_updated_at_id", "updated_at", "id"),
        Index("ix_notes_search_vector", "search_vector", postgresql_using="gin"),
    )
