"""One real PostgreSQL (the embedded one) for the test session, and real servers on real ports."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from notes.store.embedded import EmbeddedPostgres
from notes.store.migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"

# Short save windows so that debounce behaviour shows within a test. Accounts are off for the
# tests of editing itself; the accounts tests use ``auth_server`` (NOTES_AUTH=on, the default).
TEST_SERVER_ENV = {
    "NOTES_SAVE_DEBOUNCE": "0.3",
    "NOTES_SAVE_MAX_WAIT": "1.5",
    "NOTES_AUTH": "off",
    # Every test client is one address (127.0.0.1), sharing a session's server: the REST write
    # rate and socket quotas are tested with servers of their own (tests/test_rest_limits.py).
    "NOTES_REST_WRITE_RATE": "0",
    "NOTES_WS_PER_NOTE": "0",
    "NOTES_WS_PER_USER": "0",
    "NOTES_WS_PER_ADDRESS": "0",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02,
               message: str = "condition") -> object:
    """Poll ``predicate`` until it is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


async def wait_for(predicate: Callable[[], object], timeout: float = 10.0,
                   message: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await asyncio.sleep(0.01)


class ServerProcess:
    """``python -m notes serve`` as a child process on a free port."""

    def __init__(self, database_url: str, env: dict[str, str] | None = None,
                 log_name: str = "server", args: list[str] | None = None):
        self.args = list(args or [])  # after ``serve``: ``["--workers", "2"]``
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        ARTIFACTS.mkdir(exist_ok=True)
        self.log_path = ARTIFACTS / f"{log_name}-{self.port}.log"
        self.env = {
            **os.environ,
            **TEST_SERVER_ENV,
            "NOTES_DATABASE_URL": database_url,
            "NOTES_PORT": str(self.port),
            **(env or {}),
        }
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> ServerProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "notes", "serve", *self.args], env=self.env, stdout=log,
                stderr=subprocess.STDOUT, cwd=ROOT,
            )
        wait_until(self._ready, timeout, 0.05, f"the server on port {self.port}")
        return self

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"the server exited early; see {self.log_path}:\n"
                                 + self.log_path.read_text()[-3000:])
        try:
            return httpx.get(self.url + "/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.process = None
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A real PostgreSQL for the session, migrated (NOTES_TEST_DATABASE_URL, else embedded)."""
    given = os.environ.get("NOTES_TEST_DATABASE_URL")
    if given:
        upgrade(given)
        yield given
        return
    data_dir = Path(tempfile.mkdtemp(prefix="notes-test-db-"))
    embedded = EmbeddedPostgres(data_dir)
    url = embedded.start()
    upgrade(url)
    yield url
    embedded.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def server(database_url: str) -> Iterator[ServerProcess]:
    """One server process for the session (per-test servers only where a test must stop one)."""
    process = ServerProcess(database_url, log_name="session-server").start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def auth_server(database_url: str) -> Iterator[ServerProcess]:
    """A server with accounts on, as ``notes serve`` starts by default."""
    process = ServerProcess(database_url, env={"NOTES_AUTH": "on"},
                            log_name="auth-server").start()
    yield process
    process.stop()


@pytest.fixture
async def ahttp(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Any]:
    """Async reads and writes of the notes table (``live_helpers.Db``)."""
    from live_helpers import Db

    database = Db(database_url)
    yield database
    await database.close()


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def run_sql(database_url: str, statement: str, **params) -> list:
    """Run one SQL statement against a database (a fresh connection); its rows, if any."""
    from sqlalchemy import text

    from notes.store.database import make_engine

    async def go() -> list:
        engine = make_engine(database_url, pool_size=1)
        try:
            async with engine.begin() as connection:
                result = await connection.execute(text(statement), params)
                return list(result.all()) if result.returns_rows else []
        finally:
            await engine.dispose()

    return asyncio.run(go())


@pytest.fixture
def sql(database_url: str) -> Callable[..., list]:
    """Run one SQL statement against the test database (fresh connection each time)."""
    return partial(run_sql, database_url)


@pytest.fixture
def make_note(http: httpx.Client) -> Callable[..., dict]:
    def create(title: str = "A note", content: str = "") -> dict:
        response = http.post("/notes", json={"title": title, "content": content})
        assert response.status_code == 201, response.text
        return response.json()

    return create
