"""The async engine: one per process, made from a ``postgresql://`` URL."""

from __future__ import annotations

import asyncio
import collections
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
from asyncpg.exceptions import OperatorInterventionError, PostgresConnectionError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
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
        # A failed statement's error (and so its log line) must not carry its parameters: they
        # hold the notes' text, and passwords' hashes.
        hide_parameters=True,
        connect_args={"server_settings": {"application_name": "notes"}},
    )


def database_unavailable(exception: BaseException) -> bool:
    """Connection-level database failures (not bugs): REST answers them with 503, and the
    logs give them one line."""
    while exception is not None:
        # (asyncpg's own errors: from the hot reads, which run on asyncpg directly)
        if isinstance(exception, (OSError, asyncio.TimeoutError, InterfaceError,
                                  OperationalError, PostgresConnectionError,
                                  OperatorInterventionError)):
            return True
        if isinstance(exception, DBAPIError) and exception.connection_invalidated:
            return True
        exception = exception.__cause__ or exception.__context__
    return False


# Errors after which a connection is gone (the server ended it, or is shutting down).
_CONNECTION_LOST = (asyncpg.PostgresConnectionError, asyncpg.OperatorInterventionError)


# The hot connections' session: their statements are prepared once per connection and look rows
# up by key, so one generic plan serves every execution; PostgreSQL would otherwise plan the
# first five (and any whose custom plan it judges cheaper) afresh (about a tenth of its CPU per
# GET of a note, measured).
HOT_SESSION = {"plan_cache_mode": "force_generic_plan"}


class HotPool:
    """A few asyncpg connections beside the engine, for the reads every request makes (the
    credential, the caller's role, the note): one statement each, run by asyncpg itself with
    its prepared statements (cached per connection), without SQLAlchemy's connection checkout
    and execution layers, which cost more than the round trip.

    Each statement is its own transaction (autocommit), as ``Statements`` runs single
    statements: what a commit deleted or changed is seen by the very next statement. Nothing
    here changes a session's state (no SET, LISTEN, cursor, lock or transaction), so a
    connection goes back to the others as it is. That is why this is not ``asyncpg.Pool``: its
    acquire and release (a reset query per release, timeouts, a queue) cost about as much CPU
    as the statement itself.

    A connection that fails (closed by the server, say) is closed, never reused; a read that
    fails because an idle connection had died meanwhile is run once more on a new one. One
    whose statement was interrupted (the request was cancelled) is reused once PostgreSQL has
    cancelled the statement (asyncpg sees to both).
    """

    def __init__(self, url: str, *, size: int = 10, name: str = "notes-hot"):
        self.dsn = asyncpg_dsn(url)
        self.size = size
        self.name = name
        self._idle: list[asyncpg.Connection] = []
        self._waiters: collections.deque[asyncio.Future] = collections.deque()
        self._count = 0  # connections open or opening
        self._closed = False

    async def open(self) -> HotPool:
        """Opens one connection (so that a wrong URL fails here, not on a request)."""
        self._release(await self._connect())
        return self

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            self._count -= 1
            await connection.close()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(ConnectionError("the hot pool is closed"))

    async def _connect(self) -> asyncpg.Connection:
        self._count += 1
        try:
            return await asyncpg.connect(
                self.dsn, server_settings={**HOT_SESSION, "application_name": self.name})
        except BaseException:
            self._count -= 1
            self._wake()
            raise

    async def _acquire(self) -> tuple[asyncpg.Connection, bool]:
        """A connection, and whether it was idle (it may have died while it waited)."""
        while True:
            if self._closed:
                raise ConnectionError("the hot pool is closed")
            while self._idle:
                connection = self._idle.pop()
                if not connection.is_closed():
                    return connection, True
                self._count -= 1
            if self._count < self.size:
                return await self._connect(), False
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                connection = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled() and waiter.result() is not None:
                    self._release(waiter.result())  # (handed over just as we were cancelled)
                raise
            if connection is not None:
                return connection, False
            # (None: a connection was dropped, there is room to open one)

    def _release(self, connection: asyncpg.Connection) -> None:
        if self._closed:
            self._drop(connection)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        self._idle.append(connection)

    def _wake(self) -> None:
        """Room for one more connection: the first waiter opens it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _drop(self, connection: asyncpg.Connection) -> None:
        self._count -= 1
        connection.terminate()
        self._wake()

    async def fetchrow(self, query: str, *args) -> asyncpg.Record | None:
        return await self._run("fetchrow", query, args)

    async def fetch(self, query: str, *args) -> list[asyncpg.Record]:
        return await self._run("fetch", query, args)

    async def _run(self, method: str, query: str, args: tuple):
        connection, was_idle = await self._acquire()
        try:
            row = await getattr(connection, method)(query, *args)
        except asyncpg.PostgresError as error:
            if isinstance(error, _CONNECTION_LOST):
                self._drop(connection)
                if was_idle:  # (died while idle: the server restarted, or killed it)
                    return await self._run(method, query, args)
            else:  # the statement failed; the connection is fine
                self._release(connection)
            raise
        except (asyncpg.InterfaceError, OSError):
            self._drop(connection)
            if was_idle:
                return await self._run(method, query, args)
            raise
        except BaseException:
            # Cancelled mid-statement (the request was): asyncpg asks PostgreSQL to cancel the
            # statement, and the connection's next statement waits until it has.
            if connection.is_closed():
                self._drop(connection)
            else:
                self._release(connection)
            raise
        self._release(connection)
        return row


class Statements:
    """A store's way of running one statement: on a pooled connection in autocommit, so that a
    single statement needs no BEGIN/COMMIT round trips (each statement is its own transaction).

    ``hot``: the pool for the hot reads (``_hot``); without one (the commands, some tests) they
    run, the same SQL, on a connection of the engine."""

    def __init__(self, engine: AsyncEngine, hot: HotPool | None = None):
        self.engine = engine
        self.hot = hot
        self.reader = engine.execution_options(isolation_level="AUTOCOMMIT")

    async def _hot(self, query: str, *args) -> asyncpg.Record | None:
        """One row (or None) of one of the hot reads: asyncpg SQL (``$1`` parameters)."""
        if self.hot is not None:
            return await self.hot.fetchrow(query, *args)
        async with self.engine.connect() as connection:
            raw = (await connection.get_raw_connection()).driver_connection
            return await raw.fetchrow(query, *args)

    async def _hot_all(self, query: str, *args) -> list[asyncpg.Record]:
        """Every row of a hot read (a page of the listing)."""
        if self.hot is not None:
            return await self.hot.fetch(query, *args)
        async with self.engine.connect() as connection:
            raw = (await connection.get_raw_connection()).driver_connection
            return await raw.fetch(query, *args)

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
