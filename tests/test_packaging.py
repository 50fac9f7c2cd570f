"""The README commands, CI, and docker-compose.yml (read, not run: no Docker engine here)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    """The indented command lines of the README's quick start."""
    text = (ROOT / "README.md").read_text()
    quick_start = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [line.strip() for line in quick_start.splitlines() if line.startswith("    ")]


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one():
    commands = readme_commands()
    assert len(commands) == 2
    serve, test = commands
    assert serve.startswith("python3 -m venv") and serve.endswith("notes serve")
    assert test == "bash scripts/test"
    ci = (ROOT / ".ci" / "run").read_text()
    assert test in ci.splitlines()
    script = (ROOT / "scripts" / "test").read_text()
    assert "npm ci" in script and "chromium" in script
    assert script.rstrip().endswith('exec .venv/bin/python -m pytest "$@"')


def test_compose_has_postgres_and_two_instances_each_waiting_for_it():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    db = compose["services"]["db"]
    assert db["image"] == "postgres:16"
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    user, password, db_name = (db["environment"][k] for k in
                               ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"))
    for name, port in (("app1", 8000), ("app2", 8001)):
        app = compose["services"][name]
        assert app["depends_on"]["db"]["condition"] == "service_healthy"
        environment = app["environment"]
        assert environment["NOTES_DATABASE_URL"] == (
            f"postgresql://{user}:{password}@db:5432/{db_name}")
        assert (environment["NOTES_HOST"], environment["NOTES_PORT"]) == ("0.0.0.0", str(port))
        assert f"{port}:{port}" in app["ports"]
        assert f"127.0.0.1:{port}/health" in " ".join(app["healthcheck"]["test"])
        assert app["build"] == "."


def test_instances_starting_together_migrate_one_at_a_time(tmp_path):
    """Two instances on an empty database each migrate it: the second waits for the first (an
    advisory lock), then finds nothing to do, instead of racing it into an error."""
    import asyncpg

    from notes.store.database import asyncpg_dsn
    from notes.store.embedded import EmbeddedPostgres
    from notes.store.migrate import MIGRATION_LOCK

    embedded = EmbeddedPostgres(tmp_path)
    url = embedded.start()

    def migrate() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "notes", "migrate"],
                                env={**os.environ, "NOTES_DATABASE_URL": url},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    async def holding_the_lock() -> None:
        first = await asyncpg.connect(asyncpg_dsn(url))
        try:
            await first.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
            waiting = migrate()
            deadline = time.monotonic() + 30
            while not await first.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"):
                assert waiting.poll() is None, waiting.communicate()[0]
                assert time.monotonic() < deadline, "the migration never waited for the lock"
                await asyncio.sleep(0.05)
            assert waiting.poll() is None  # it waits while another instance migrates
            again = migrate()
        finally:
            await first.close()  # the lock goes with the connection
        for migration in (waiting, again):
            output, _ = migration.communicate(timeout=120)
            assert migration.returncode == 0, output

    try:
        asyncio.run(holding_the_lock())
    finally:
        embedded.delete()


def test_dockerfile_installs_and_serves():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.1[0-2]", dockerfile, re.M)
    assert "pip install" in dockerfile
    assert 'CMD ["notes", "serve"]' in dockerfile
    for copied in ("notes", "migrations", "pyproject.toml"):
        assert re.search(rf"^COPY .*\b{re.escape(copied)}\b", dockerfile, re.M), copied


def test_fewer_than_one_worker_is_refused():
    result = subprocess.run([sys.executable, "-m", "notes", "serve", "--workers", "0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "at least 1" in result.stderr


def test_an_unknown_durability_is_refused():
    env = {**os.environ, "NOTES_DURABILITY": "sometimes"}
    result = subprocess.run([sys.executable, "-m", "notes", "serve"], capture_output=True,
                            text=True, timeout=60, env=env)
    assert result.returncode == 2
    assert "NOTES_DURABILITY" in result.stderr and "log, debounce" in result.stderr


def test_unreachable_database_url_is_a_clear_error(tmp_path):
    env = {"NOTES_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
           "NOTES_DATABASE_WAIT": "1", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "notes", "migrate"], capture_output=True,
                            text=True, timeout=60, env=env)
    assert result.returncode == 1
    assert "did not answer" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_with_zero_configuration_uses_the_embedded_database(tmp_path):
    import httpx
    from conftest import ServerProcess

    data_dir = tmp_path / "data"
    server = ServerProcess("", env={"NOTES_DATA_DIR": str(data_dir)}, log_name="zero-config")
    server.start(timeout=90)
    try:
        created = httpx.post(server.url + "/notes", json={"title": "embedded", "content": "é"})
        assert created.status_code == 201
        assert httpx.get(server.url + "/docs").status_code == 200
        assert (data_dir / "pg" / "PG_VERSION").exists()
    finally:
        assert server.stop() == 0
    log = server.log()
    assert f"http://127.0.0.1:{server.port}/docs" in log
    assert "embedded PostgreSQL" in log
    assert not (data_dir / "pg" / "postmaster.pid").exists()  # the cluster was stopped


def test_a_regular_install_serves_the_protocol_document(tmp_path):
    """Not editable: everything the server reads at run time must be inside the package."""
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(wheels), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("notes-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(wheel)], check=True, capture_output=True, timeout=300)
    probe = ("import notes, notes.http.site as site; "
             "print(notes.__file__); print(site.PROTOCOL_DOC.read_text()[:40])")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path, env={"PYTHONPATH": str(target)})
    assert result.returncode == 0, result.stderr
    installed, first_line = result.stdout.splitlines()[:2]
    assert installed.startswith(str(target))
    assert first_line == "# Live editing protocol"
