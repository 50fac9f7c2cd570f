"""NOTES_BACKLOG: the listen socket's backlog, as the kernel reports it for a real server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import ServerProcess, wait_until

from notes.config import Settings

SOMAXCONN = Path("/proc/sys/net/core/somaxconn")


def test_backlog_is_read_from_the_environment():
    assert Settings.from_env({}).backlog == 1024
    assert Settings.from_env({"NOTES_BACKLOG": "4096"}).backlog == 4096


@pytest.mark.parametrize("raw", ["0", "-5"])
def test_a_backlog_below_one_is_refused(raw):
    with pytest.raises(ValueError, match="NOTES_BACKLOG.*at least 1"):
        Settings.from_env({"NOTES_BACKLOG": raw})


def test_serve_refuses_a_backlog_below_one():
    env = {**os.environ, "NOTES_BACKLOG": "0"}
    result = subprocess.run([sys.executable, "-m", "notes", "serve"], capture_output=True,
                            text=True, timeout=60, env=env)
    assert result.returncode == 2
    assert "NOTES_BACKLOG=0 must be at least 1" in result.stderr
    assert "Traceback" not in result.stderr


def listen_backlogs(port: int) -> list[int]:
    """The backlog of every socket listening on ``port``: ``ss`` shows it as a listening
    socket's Send-Q (the 3rd column of ``ss -Hltn``: State Recv-Q Send-Q Local Peer)."""
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True,
                         check=True, timeout=10).stdout
    return [int(line.split()[2]) for line in out.splitlines() if line.strip()]


@pytest.mark.skipif(shutil.which("ss") is None or not SOMAXCONN.exists(),
                    reason="needs Linux and ss (iproute2)")
@pytest.mark.parametrize(("workers", "env", "wanted"), [
    (1, {"NOTES_BACKLOG": "517"}, 517),
    (2, {"NOTES_BACKLOG": "517"}, 517),
    (1, {}, 1024),  # the default
], ids=["single-process", "workers", "default"])
def test_the_listen_socket_has_the_configured_backlog(database_url, workers, env, wanted):
    somaxconn = int(SOMAXCONN.read_text())
    if somaxconn <= 100:
        pytest.skip(f"net.core.somaxconn={somaxconn} caps any backlog at or below Sanic's 100")
    server = ServerProcess(database_url, env=env, log_name="backlog",
                           args=["--workers", str(workers)])
    server.start(timeout=60)
    try:
        # Every worker up before the SIGTERM below (one still starting would not stop cleanly).
        pids: set[int] = set()
        wait_until(lambda: pids.add(httpx.get(server.url + "/health", timeout=5)
                                    .json()["process"]["pid"]) or len(pids) >= workers,
                   timeout=30, message=f"{workers} workers answering /health")
        backlogs = listen_backlogs(server.port)
    finally:
        assert server.stop() == 0
    assert backlogs, f"nothing listens on port {server.port}"
    assert set(backlogs) == {min(wanted, somaxconn)}, backlogs
