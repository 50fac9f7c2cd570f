"""The migrated schema and the models agree, and migrations run both ways."""

from __future__ import annotations

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from notes.store.database import make_engine
from notes.store.models import Base


def schema_differences(url: str) -> list:
    async def compare() -> list:
        engine = make_engine(url, pool_size=1)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(
                    lambda sync: compare_metadata(
                        MigrationContext.configure(sync, opts={"compare_type": True}),
                        Base.metadata,
                    )
                )
        finally:
            await engine.dispose()

    return asyncio.run(compare())


def test_models_match_migrated_schema(database_url):
    assert schema_differences(database_url) == []


def test_migrations_downgrade_and_upgrade(tmp_path):
    from alembic import command

    from notes.store.embedded import EmbeddedPostgres
    from notes.store.migrate import alembic_config, upgrade

    embedded = EmbeddedPostgres(tmp_path)
    url = embedded.start()
    try:
        upgrade(url)
        command.downgrade(alembic_config(url), "base")
        upgrade(url)
        assert schema_differences(url) == []
    finally:
        embedded.delete()


def test_search_index_exists(sql):
    indexes = {row[0]: row[1] for row in sql(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'notes'")}
    assert "USING gin (search_vector)" in indexes["ix_notes_search_vector"]
    (generated,) = sql("SELECT generation_expression FROM information_schema.columns "
                       "WHERE table_name = 'notes' AND column_name = 'search_vector'")
    assert "to_tsvector" in generated[0]
