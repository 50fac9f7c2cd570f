"""The ``notes`` command: ``notes serve``, ``notes migrate``, ``notes users add NAME``, and
``notes export DIR`` / ``notes import PATH``."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import partial, wraps
from pathlib import Path
from typing import TypeVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notes.config import Settings
from notes.logs import configure_logging
from notes.store.accounts import AccountStore, NoSuchUser
from notes.store.database import make_engine
from notes.store.embedded import EmbeddedDatabaseError, EmbeddedPostgres
from notes.store.migrate import upgrade

T = TypeVar("T")


def _describe(url: str) -> str:
    return url.split("@")[-1] if "@" in url else url


def wait_for_database(url: str, timeout: float) -> None:
    """Poll until the database accepts connections (a container may start before it)."""

    async def ping() -> None:
        engine = make_engine(url, pool_size=1)
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        finally:
            await engine.dispose()

    deadline = time.monotonic() + timeout
    while True:
        try:
            asyncio.run(ping())
            return
        except Exception as error:
            if time.monotonic() > deadline:
                raise DatabaseUnavailable(
                    f"the database at {_describe(url)} did not answer within {timeout:g}s: "
                    f"{type(error).__name__}"
                ) from None
            time.sleep(0.5)


class DatabaseUnavailable(RuntimeError):
    pass


@contextmanager
def migrated_database(settings: Settings) -> Iterator[tuple[str, EmbeddedPostgres | None]]:
    """The configured database (the embedded cluster, started, unless NOTES_DATABASE_URL is set),
    migrated to head; an embedded cluster is stopped on the way out."""
    if settings.database_url:
        wait_for_database(settings.database_url, settings.database_wait)
        url, embedded = settings.database_url, None
    else:
        embedded = EmbeddedPostgres(settings.data_dir)
        url = embedded.start()
    try:
        upgrade(url)
        yield url, embedded
    finally:
        if embedded is not None:
            embedded.stop()


def on_database(settings: Settings, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """Run ``work`` with an engine on the configured database (migrated; an embedded cluster
    is started for it and stopped after, unless a server holds it too)."""

    async def run(url: str) -> T:
        engine = make_engine(url, pool_size=2)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    with migrated_database(settings) as (url, _):
        return asyncio.run(run(url))


def serve(settings: Settings, workers: int) -> int:
    """Serve on one process, or on ``workers`` worker processes (Sanic's worker manager).

    The main process starts (and stops) the embedded PostgreSQL and migrates it once; every
    worker builds its own app on that database and meets the others through it.
    """
    if workers < 1:
        print("notes: --workers must be at least 1", file=sys.stderr)
        return 2
    from sanic import Sanic
    from sanic.worker.loader import AppLoader

    from notes.app import create_app

    with migrated_database(settings) as (url, embedded):
        loader = AppLoader(factory=partial(create_app, replace(settings, database_url=url)))
        app = loader.load()
        where = f"http://{settings.host}:{settings.port}"
        kind = f"embedded PostgreSQL in {settings.data_dir}" if embedded else "NOTES_DATABASE_URL"
        print(f"notes listening on {where}", flush=True)
        print(f"  editor:   {where}/", flush=True)
        print(f"  API docs: {where}/docs", flush=True)
        print(f"  database: {kind} ({_describe(url)})", flush=True)
        print(f"  workers:  {workers}, durability: {settings.durability}", flush=True)
        if settings.auth_on:
            print(f"  accounts: on, sign-up {settings.signup}", flush=True)
        else:
            print("  accounts: OFF (NOTES_AUTH=off). Every note is open to anyone who can reach "
                  f"{where}: use this on a private machine only.", file=sys.stderr, flush=True)
        if workers == 1:
            app.run(host=settings.host, port=settings.port, backlog=settings.backlog,
                    single_process=True, access_log=settings.access_log, motd=False)
        else:
            app.prepare(host=settings.host, port=settings.port, backlog=settings.backlog,
                        workers=workers, access_log=settings.access_log, motd=False)
            guard_worker_manager()
            Sanic.serve(primary=app, app_loader=loader)
    return 0


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def guard_worker_manager() -> None:
    """Work around a race in Sanic's worker manager (25.12): its SIGTERM/SIGINT handler writes
    the workers' states through a multiprocessing manager, and a signal that arrives while the
    monitor loop is itself in the middle of such a call interleaves the two on one connection.
    The manager then dies ("'NoneType' object is not a mapping") and ``notes serve --workers
    N`` exits 1 instead of stopping cleanly (seen in CI). The monitor's calls run with those
    signals blocked, so the handler runs between them, never inside one."""
    from sanic.worker.manager import WorkerManager

    for name in ("_sync_states", "_cleanup_non_tracked_workers", "_all_workers_ack"):
        method = getattr(WorkerManager, name)
        if getattr(method, "notes_guarded", False):
            continue
        setattr(WorkerManager, name, _signals_held(method))


def _signals_held(method: Callable) -> Callable:
    @wraps(method)
    def held(*args, **kwargs):
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            return method(*args, **kwargs)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    held.notes_guarded = True  # type: ignore[attr-defined]
    return held


def migrate(settings: Settings) -> int:
    with migrated_database(settings) as (url, _):
        print(f"migrated {_describe(url)}")
    return 0


def add_user(settings: Settings, username: str, password: str | None) -> int:
    """``notes users add NAME``: with ``--password-stdin`` the password is read from stdin,
    else asked for on a terminal, else generated and printed."""
    from notes.accounts import Accounts, InvalidAccount, UsernameTaken, generate_password

    generated = False
    if password is None:
        if sys.stdin.isatty():
            password = getpass.getpass(f"password for {username} (empty: generate one): ")
        if not password:
            password, generated = generate_password(), True

    async def create(engine: AsyncEngine):
        return await Accounts(AccountStore(engine)).create_user(username, password)

    try:
        user = on_database(settings, create)
    except InvalidAccount as error:
        print(f"notes: {error}", file=sys.stderr)
        return 2
    except UsernameTaken:
        print(f"notes: the username {username!r} is taken", file=sys.stderr)
        return 1
    print(f"created user {user.username}")
    if generated:
        print(f"password: {password}")
    return 0


async def _owner(engine: AsyncEngine, username: str | None):
    """The account named ``username`` (None: no name given); NoSuchUser if there is none."""
    if username is None:
        return None
    user = await AccountStore(engine).user_by_name(username)
    if user is None:
        raise NoSuchUser(f"no account is named {username!r}")
    return user


def export_notes(settings: Settings, folder: Path, owner: str | None) -> int:
    """``notes export DIR``: every note outside the trash (or ``--owner``'s) as a file in DIR,
    in the layout ``GET /export`` zips (``notes.transfer``)."""
    from notes.store.transfer import TransferStore
    from notes.transfer import file_name, render

    async def write(engine: AsyncEngine) -> int:
        user = await _owner(engine, owner)
        written = 0
        async for note in TransferStore(engine).notes(user and user.id):
            (folder / file_name(note)).write_bytes(render(note))
            written += 1
        return written

    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        # (files of an earlier export would hold the same ids under older titles)
        print(f"notes: {folder} is not an empty folder", file=sys.stderr)
        return 2
    folder.mkdir(parents=True, exist_ok=True)
    try:
        written = on_database(settings, write)
    except NoSuchUser as error:
        print(f"notes: {error.args[0]}", file=sys.stderr)
        return 2
    print(f"exported {written} notes to {folder}")
    return 0


def import_notes(settings: Settings, path: Path, owner: str | None) -> int:
    """``notes import PATH``: the notes of an export (a folder, or a zip from ``GET /export``)
    that are not here yet, by id, all in one transaction: an invalid file imports nothing."""
    from notes.store.transfer import TransferStore
    from notes.transfer import InvalidExport, Limits, read_export

    if settings.auth_on and owner is None:
        print("notes: accounts are on: say whose the notes become with --owner NAME",
              file=sys.stderr)
        return 2
    if not path.exists():
        print(f"notes: {path} does not exist", file=sys.stderr)
        return 2
    limits = Limits(settings.max_title, settings.max_content)

    async def store(engine: AsyncEngine):
        user = await _owner(engine, owner)
        return await TransferStore(engine).import_notes(
            read_export(path, limits), owner_id=user and user.id,
            authors=[user.username] if user else [])

    try:
        result = on_database(settings, store)
    except InvalidExport as error:
        print(f"notes: not imported, {error}", file=sys.stderr)
        return 2
    except NoSuchUser as error:
        print(f"notes: {error.args[0]}", file=sys.stderr)
        return 2
    print(f"imported {result.imported} notes, skipped {result.skipped} already here")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="notes", description="A collaborative notes server.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="migrate and serve (embedded PostgreSQL "
                                       "unless NOTES_DATABASE_URL is set)")
    serve_parser.add_argument("--host")
    serve_parser.add_argument("--port", type=int)
    serve_parser.add_argument("--workers", type=int, default=1)
    commands.add_parser("migrate", help="apply the database migrations")
    users_parser = commands.add_parser("users", help="manage accounts")
    users_commands = users_parser.add_subparsers(dest="users_command", required=True)
    add_parser = users_commands.add_parser(
        "add", help="create an account (asks for a password, or generates and prints one)")
    add_parser.add_argument("username")
    add_parser.add_argument("--password-stdin", action="store_true",
                            help="read the password from the first line of stdin")
    export_parser = commands.add_parser(
        "export", help="write every note (or one account's) as Markdown files into a folder")
    export_parser.add_argument("folder", type=Path)
    export_parser.add_argument("--owner", help="only the notes this account owns")
    import_parser = commands.add_parser(
        "import", help="read the notes of an export (a folder, or a zip from GET /export); "
        "notes already here (by id) are skipped")
    import_parser.add_argument("path", type=Path)
    import_parser.add_argument("--owner", help="the account the notes become the notes of")
    args = parser.parse_args(argv)

    overrides = {key: value for key in ("host", "port")
                 if (value := getattr(args, key, None)) is not None}
    try:
        settings = Settings.from_env(**overrides)
    except ValueError as error:
        print(f"notes: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format)
    try:
        if args.command == "serve":
            return serve(settings, args.workers)
        if args.command == "users":
            password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
            return add_user(settings, args.username, password)
        if args.command == "export":
            return export_notes(settings, args.folder, args.owner)
        if args.command == "import":
            return import_notes(settings, args.path, args.owner)
        return migrate(settings)
    except (EmbeddedDatabaseError, DatabaseUnavailable) as error:
        print(f"notes: {error}", file=sys.stderr)
        return 1
