"""Alembic environment: runs migrations through asyncpg on the database notes is configured for."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from notes.store.database import make_engine
from notes.store.migrate import MIGRATION_LOCK
from notes.store.models import Base

target_metadata = Base.metadata


def database_url() -> str:
    url = context.config.attributes.get("database_url") or os.environ.get("NOTES_DATABASE_URL")
    if not url:
        raise SystemExit(
            "NOTES_DATABASE_URL is not set: alembic needs a postgresql:// URL "
            "(`notes migrate` also handles the embedded database)."
        )
    return url



def run_with(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      compare_type=True)
    with context.begin_transaction():
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        context.run_migrations()


async def run_online() -> None:
    engine = make_engine(database_url(), pool_size=1)
    async with engine.connect() as connection:
        await connection.run_sync(run_with)
        await connection.commit()
    await engine.dispose()


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run_with(connection)
    else:
        asyncio.run(run_online())


if context.is_offline_mode():
    context.configure(url=database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run()
