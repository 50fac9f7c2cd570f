"""Apply the Alembic migrations programmatically (``notes migrate``, ``notes serve``, tests)."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config

# Instances starting together each migrate: one at a time, under this advisory lock (the others
# then find nothing to do).
MIGRATION_LOCK = 0x6E6F746573  # "notes"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("notes.migrations")))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)
