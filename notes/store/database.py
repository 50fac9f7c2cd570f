"""The async engine: one per process, made from a ``postgresql://`` URL."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def asyncpg_url(url: str) -> str:
    """``postgresql://…`` (any driver suffix) as SQLAlchemy's ``postgresql+asyncpg://…``."""
    parts = urlsplit(url)
    if parts.scheme.split("+")[0] not in {"postgresql", "postgres"}:
        raise ValueError(f"not a postgresql:// URL: {parts.scheme}://…")
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "sslmode"])
    return urlunsplit(("postgresql+asyncpg", parts.netloc, parts.path, query, parts.fragment))


def asyncpg_dsn(url: str) -> str:
    """``postgresql://…`` (any driver suffix) as a DSN for ``asyncpg.connect``."""
    parts = urlsplit(url)
    if parts.scheme.split("+")[0] not in {"postgresql", "postgres"}:
        raise ValueError(f"not a postgresql:// URL: {parts.scheme}://…")
    return urlunsplit(("postgresql", parts.netloc, parts.path, parts.query, parts.fragment))


def make_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(
        asyncpg_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,
        connect_args={"server_settings": {"application_name": "notes"}},
    )


class Statements:
    """A store's way of running one statement: on a pooled connection in autocommit, so that a
    single statement needs no BEGIN/COMMIT round trips (each statement is its own transaction)."""

    def __init__(self, engine: AsyncEngine):
        self.engine = engine
        self.reader = engine.execution_options(isolation_level="AUTOCOMMIT")

    async def _one(self, statement, **params):
        async with self.reader.connect() as connection:
            return (await connection.execute(statement, params)).one_or_none()

    async def _all(self, statement, **params) -> list:
        async with self.reader.connect() as connection:
            return list((await connection.execute(statement, params)).all())

    async def _count(self, statement, **params) -> int:
        """The number of rows the statement changed."""
        async with self.reader.connect() as connection:
            return (await connection.execute(statement, params)).rowcount
