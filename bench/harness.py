"""What every scenario needs: an embedded PostgreSQL, a notes server process, /proc readings,
percentiles, load-generator processes, and a little HTTP/SQL.

The notes server always runs as its own process (``python -m notes serve``); load generators run in
other processes (``multiprocessing``, fork). Nothing here imports the server's code at run time
except the embedded-PostgreSQL launcher and the delta helpers the clients use.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

MP = mp.get_context("fork")

#: A directory holding a (patched) copy of the ``notes`` package (``--server-path``): the server
#: runs from there (its working directory, first on PYTHONPATH) instead of this checkout.
SERVER_PYTHONPATH: str | None = None


# --- small numbers ------------------------------------------------------------------------------


def percentiles(samples_ns, scale: float = 1e6) -> dict[str, float | int | None]:
    """p50/p95/p99/max (and count) of nanosecond samples, in milliseconds by default."""
    values = sorted(samples_ns)
    n = len(values)
    if n == 0:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}

    def at(q: float) -> float:
        return round(values[min(n - 1, int(q * n))] / scale, 3)

    return {"n": n, "p50": at(0.50), "p95": at(0.95), "p99": at(0.99),
            "max": round(values[-1] / scale, 3)}


def fmt_ms(value) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- /proc --------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (not its children), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def children_pids(pid: int) -> list[int]:
    out = []
    with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{pid}/children") as f:
        out = [int(x) for x in f.read().split()]
    for child in list(out):
        out.extend(children_pids(child))
    return out


class CpuMeter:
    """CPU used by a set of processes since creation (``cores`` = a share of one core). A process
    that exits in between counts with what it had used when last seen."""

    def __init__(self, pids: list[int]):
        self.pids = pids
        self.t0 = time.monotonic()
        self.start = self._sample()
        self.last = dict(self.start)

    def _members(self) -> list[int]:
        return self.pids

    def _sample(self) -> dict[int, float]:
        out = {}
        for pid in self._members():
            with contextlib.suppress(OSError):
                out[pid] = cpu_seconds(pid)
        return out

    def read(self) -> dict[str, float]:
        wall = time.monotonic() - self.t0
        self.last.update(self._sample())
        # (a process first seen after the start counts from zero: see TreeCpuMeter)
        used = sum(v - self.start.get(pid, 0.0) for pid, v in self.last.items())
        return {"cpu_s": round(used, 2), "wall_s": round(wall, 2),
                "cores": round(used / wall, 2) if wall > 0 else 0.0}


def postgres_pids() -> list[int]:
    """Every postgres process on the machine (the embedded cluster's backends)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().strip() in ("postgres", "postmaster"):
                        pids.append(int(entry))
            except OSError:
                pass
    return pids


class TreeCpuMeter(CpuMeter):
    """CPU used by a process and all its descendants since creation, counting the descendants
    that appear in between from zero (e.g. PostgreSQL backends opened during a cell)."""

    def __init__(self, root: int):
        self.root = root
        super().__init__([root])

    def _members(self) -> list[int]:
        return [self.root, *children_pids(self.root)]


def git_head() -> str:
    """The commit the server code comes from (``+dirty`` when notes/ has local changes). For a
    ``--server-path`` copy: the commit written in its COMMIT file (see docs/benchmarks.md)."""
    if SERVER_PYTHONPATH:
        marker = Path(SERVER_PYTHONPATH) / "COMMIT"
        if marker.exists():
            return marker.read_text().strip()
        return f"copy at {SERVER_PYTHONPATH}"
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "notes"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except OSError:
        return "unknown"


def machine() -> dict[str, Any]:
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import sanic
    import websockets
    return {"cpus": os.cpu_count(), "cpu_model": model, "mem_gib": round(mem / 2**30, 1),
            "python": sys.version.split()[0], "sanic": sanic.__version__,
            "websockets": websockets.__version__, "platform": sys.platform}


# --- PostgreSQL ---------------------------------------------------------------------------------


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def sql(url: str, statement: str, *args) -> list:
    """Run one statement on a fresh asyncpg connection; rows as tuples."""
    import asyncpg

    async def go():
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch(statement, *args)
            return [tuple(r) for r in rows]
        finally:
            await conn.close()

    return asyncio.run(go())


class Cluster:
    """One embedded PostgreSQL for a ``python -m bench`` run; a fresh database per scenario."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="notes-bench-pg-"))
        self.url = ""
        self._embedded = None

    def start(self) -> Cluster:
        from notes.store.embedded import EmbeddedPostgres

        self._embedded = EmbeddedPostgres(self.dir)
        self.url = self._embedded.start()
        return self

    def postmaster_pid(self) -> int | None:
        """The pid of this cluster's postmaster (its command line names the data directory);
        other clusters on the machine (other sessions' tests) are not ours."""
        needle = str((self.dir / "pg").resolve()).encode()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"postgres") and b"-D" in argv:
                i = argv.index(b"-D")
                if i + 1 < len(argv) and argv[i + 1].rstrip(b"/") == needle:
                    return int(entry)
        return None

    def cpu(self) -> TreeCpuMeter | CpuMeter:
        """CPU of this cluster's processes (postmaster and backends); all postgres processes on
        the machine if the postmaster is not found."""
        pid = self.postmaster_pid()
        return TreeCpuMeter(pid) if pid else CpuMeter(postgres_pids())

    def fresh_database(self, name: str) -> str:
        name = f"bench_{name}"
        sql(self.url, f'DROP DATABASE IF EXISTS "{name}"')
        sql(self.url, f'CREATE DATABASE "{name}"')
        return with_database(self.url, name)

    def stop(self) -> None:
        if self._embedded is not None:
            self._embedded.stop()
            self._embedded = None
        shutil.rmtree(self.dir, ignore_errors=True)


def table_writes(db_url: str) -> dict[str, int]:
    rows = sql(db_url, "SELECT n_tup_ins, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
                       "WHERE relname = 'notes'")
    ins, upd, hot = rows[0] if rows else (0, 0, 0)
    return {"ins": ins, "upd": upd, "hot_upd": hot}


def wal_stats(db_url: str) -> dict[str, int]:
    """The cluster's WAL counters (``pg_stat_wal``: every database of the cluster): records
    written, write() calls and fsyncs (``wal_sync``: one per flush to disk, however many commits
    it covers). Backends report them within about a second of going idle: call after
    :func:`wait_stats_flush`."""
    sql(db_url, "SELECT pg_stat_clear_snapshot()")
    rows = sql(db_url, "SELECT wal_records, wal_write, wal_sync, wal_bytes FROM pg_stat_wal")
    records, writes, syncs, size = rows[0]
    return {"records": int(records), "writes": int(writes), "syncs": int(syncs),
            "bytes": int(size)}


def counts_since(before: dict, after: dict) -> dict[str, int]:
    """after - before, for the integer counters of two readings."""
    return {k: after[k] - before[k] for k in after
            if isinstance(after[k], int) and not isinstance(after[k], bool)}


def pg_settings(db_url: str) -> dict[str, str]:
    """The settings that decide what a commit costs."""
    rows = sql(db_url, "SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[])",
               ["synchronous_commit", "fsync", "wal_sync_method", "commit_delay",
                "full_page_writes", "wal_writer_delay", "server_version"])
    return dict(rows)


def stats_snapshot_clear(db_url: str) -> None:
    """Make the next read of pg_stat_* see fresh counters (they are cached per transaction)."""
    sql(db_url, "SELECT pg_stat_clear_snapshot()")


def wait_stats_flush() -> None:
    # Backends report table counters at most every PGSTAT_MIN_INTERVAL (1 s) when idle.
    time.sleep(1.2)


# --- the notes server ---------------------------------------------------------------------------


def _preexec() -> None:
    raise_nofile()
    os.setpgrp()


def terminate(process: subprocess.Popen | None, timeout: float) -> int:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; the exit code (0 if never started)."""
    if process is None:
        return 0
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def server_code_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a process that runs the server's code: a ``--server-path`` copy
    first on its PYTHONPATH (else this checkout's, from the working directory or the script)."""
    env = {**os.environ, **(extra or {})}
    if SERVER_PYTHONPATH:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (SERVER_PYTHONPATH, env.get("PYTHONPATH")) if p)
    return env


class Server:
    """``python -m notes serve`` as a child process on a free port, on the given database."""

    def __init__(self, database_url: str, env: dict[str, str] | None = None, name: str = "notes",
                 argv: list[str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.name = name
        RESULTS.mkdir(parents=True, exist_ok=True)
        self.log_path = RESULTS / f"{name}-{self.port}.log"
        self.env = server_code_env({"NOTES_DATABASE_URL": database_url,
                                    "NOTES_PORT": str(self.port), "NOTES_ACCESS_LOG": "false",
                                    # the scenarios measure editing, not accounts
                                    "NOTES_AUTH": "off",
                                    # every client is one address: no quota may cut the load
                                    "NOTES_REST_WRITE_RATE": "0", "NOTES_WS_PER_NOTE": "0",
                                    "NOTES_WS_PER_USER": "0", "NOTES_WS_PER_ADDRESS": "0",
                                    **(env or {})})
        self.argv = argv or [sys.executable, "-m", "notes", "serve"]
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 60.0, health: str = "/health") -> Server:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.argv, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT,
                                            cwd=SERVER_PYTHONPATH or ROOT, preexec_fn=_preexec)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n" + self.log()[-3000:])
            try:
                with urllib.request.urlopen(self.url + health, timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not come up:\n" + self.log()[-3000:])
            time.sleep(0.05)

    def stop(self, timeout: float = 30.0) -> int:
        code = terminate(self.process, timeout)
        self.process = None
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss(self) -> int:
        return rss_bytes(self.pid)

    def cpu(self) -> CpuMeter:
        return CpuMeter([self.pid])

    # --- HTTP --------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"content-type": "application/json",
                                              **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                raw = r.read()
                return r.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace")

    def sign_up(self, username: str, password: str = "bench password") -> str:
        """An account on a server with NOTES_AUTH=on; an API token of it."""
        req = urllib.request.Request(
            self.url + "/auth/signup", method="POST", headers={"content-type": "application/json"},
            data=json.dumps({"username": username, "password": password}).encode())
        with urllib.request.urlopen(req, timeout=60) as r:
            cookie = r.headers["set-cookie"].split(";")[0]
        status, body = self.request("POST", "/auth/tokens", {"name": "bench"},
                                    headers={"cookie": cookie})
        if status != 201:
            raise RuntimeError(f"token: {status} {body}")
        return body["token"]

    def create_note(self, title: str = "bench", content: str = "") -> str:
        status, body = self.request("POST", "/notes", {"title": title, "content": content})
        if status != 201:
            raise RuntimeError(f"create note: {status} {body}")
        return body["id"]

    def get_note(self, note_id: str) -> dict:
        status, body = self.request("GET", f"/notes/{note_id}")
        if status != 200:
            raise RuntimeError(f"get note: {status} {body}")
        return body

    def ws_path(self, note_id: str, name: str = "bench") -> str:
        return f"/notes/{note_id}/live?name={name}"

    def health(self) -> dict:
        """``process`` of GET /health: what this process holds and wrote (open_notes,
        durability, log_commits, log_entries, saves, catch_ups, listen_reconnects)."""
        status, body = self.request("GET", "/health")
        if status != 200:
            raise RuntimeError(f"health: {status} {body}")
        return body["process"]


def start_instances(database_url: str, name: str, count: int = 2,
                    env: dict[str, str] | None = None) -> list[Server]:
    """``count`` notes servers on one database (instances A, B, ...), started one after the
    other (the first migrates the database). Stopped again if one fails to come up."""
    servers: list[Server] = []
    try:
        for i in range(count):
            servers.append(Server(database_url, env=env, name=f"{name}-{'ABCDEFGH'[i]}").start())
    except BaseException:
        stop_all(servers)
        raise
    return servers


def stop_all(servers: list[Server]) -> list[int]:
    return [server.stop() for server in servers]


# --- load-generator processes -------------------------------------------------------------------


@dataclass
class Workers:
    """Load-generator processes. Each runs ``target(index, conf, ctl)`` (an async function) on its
    own uvloop; ``ctl`` carries a ``ready``/``result`` queue and ``go``/``stop`` events."""

    target: Callable
    confs: list[dict]
    procs: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.out = MP.Queue()
        self.go = MP.Event()
        self.stop = MP.Event()
        self.cmd = [MP.Queue() for _ in self.confs]
        self.shared = MP.Value("q", 0)  # e.g. the final revision the workers must reach

    def start(self) -> Workers:
        for index, conf in enumerate(self.confs):
            p = MP.Process(target=_worker_main, daemon=True,
                           args=(self.target, index, conf, self.out, self.go, self.stop,
                                 self.cmd[index], self.shared))
            p.start()
            self.procs.append(p)
        return self

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def collect(self, kind: str, timeout: float = 120.0) -> list[Any]:
        """Wait for one ``(kind, index, payload)`` message from every worker; in index order."""
        got: dict[int, Any] = {}
        deadline = time.monotonic() + timeout
        while len(got) < len(self.procs):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"workers did not all report {kind!r} ({len(got)}/"
                                   f"{len(self.procs)})")
            try:
                what, index, payload = self.out.get(timeout=min(remaining, 1.0))
            except Exception:
                if any(p.exitcode not in (None, 0) for p in self.procs):
                    raise RuntimeError("a load-generator process died") from None
                continue
            if what == "error":
                raise RuntimeError(f"worker {index} failed:\n{payload}")
            if what != kind:
                raise RuntimeError(f"worker {index} sent {what!r}, expected {kind!r}")
            got[index] = payload
        return [got[i] for i in range(len(self.procs))]

    def send(self, message: Any) -> None:
        for q in self.cmd:
            q.put(message)

    def join(self, timeout: float = 30.0) -> None:
        for p in self.procs:
            p.join(timeout)
            if p.is_alive():
                p.kill()
                p.join()


class Control:
    """A worker's side of the control channel."""

    def __init__(self, index, out, go, stop, cmd, shared):
        self.index, self._out, self._go, self._stop, self._cmd = index, out, go, stop, cmd
        self.shared = shared

    def report(self, kind: str, payload: Any = None) -> None:
        self._out.put((kind, self.index, payload))

    async def wait_go(self) -> None:
        while not self._go.is_set():
            await asyncio.sleep(0.005)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def wait_stop(self) -> None:
        while not self._stop.is_set():
            await asyncio.sleep(0.02)

    async def command(self) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._cmd.get)


def _worker_main(target, index, conf, out, go, stop, cmd, shared) -> None:
    raise_nofile()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    ctl = Control(index, out, go, stop, cmd, shared)
    try:
        asyncio.run(target(index, conf, ctl))
    except BaseException:
        out.put(("error", index, traceback.format_exc()))
        raise


def split(items: list, parts: int) -> list[list]:
    """Deal items round-robin into ``parts`` lists (none empty unless items run out)."""
    buckets: list[list] = [[] for _ in range(max(1, min(parts, len(items))))]
    for i, item in enumerate(items):
        buckets[i % len(buckets)].append(item)
    return buckets


# --- the rest of the machine --------------------------------------------------------------------


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all cores, everything but idle and iowait)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


class MachineMeter:
    """Busy cores on the whole machine over an interval: the share not ours shows contention
    from other work on the machine (the benchmark does not own it)."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.b0 = machine_busy_seconds()

    def read(self) -> float:
        wall = time.monotonic() - self.t0
        return round((machine_busy_seconds() - self.b0) / wall, 2) if wall > 0 else 0.0


class CellMeters:
    """The CPU of one measured cell: each server process, the cluster's PostgreSQL, the load
    generators, the whole machine, and what is left for other work (started in that order)."""

    def __init__(self, servers: list[Server], cluster: Cluster, load_pids: list[int]):
        self.servers = [server.cpu() for server in servers]
        self.postgres = cluster.cpu()
        self.load = CpuMeter(load_pids)
        self.machine = MachineMeter()

    def read(self, names: list[str] | None = None) -> dict[str, Any]:
        """``server_cpu`` (one reading per server, in order; with ``names``, each server's under
        its name instead), ``postgres_cpu``, ``loadgen_cpu``, ``machine_cores`` and
        ``others_cores``."""
        servers = [meter.read() for meter in self.servers]
        postgres, load, busy = self.postgres.read(), self.load.read(), self.machine.read()
        ours = sum(c["cores"] for c in servers) + postgres["cores"] + load["cores"]
        named = (dict(zip(names, servers, strict=True)) if names is not None
                 else {"server_cpu": servers})
        return {**named, "postgres_cpu": postgres, "loadgen_cpu": load, "machine_cores": busy,
                "others_cores": round(max(0.0, busy - ours), 2)}


def others_busy(seconds: float = 1.0, exclude: list[int] | None = None) -> float:
    """Cores busy over ``seconds`` with processes other than ``exclude`` (and postgres)."""
    pids = (exclude or []) + postgres_pids()
    ours = CpuMeter(pids)
    machine = MachineMeter()
    time.sleep(seconds)
    return round(max(0.0, machine.read() - ours.read()["cores"]), 2)


def wait_quiet(max_wait: float, threshold: float = 0.25) -> dict:
    """Wait (up to ``max_wait`` s) until other work on the machine uses < ``threshold`` cores."""
    start = time.monotonic()
    busy = others_busy(1.0, [os.getpid()])
    while busy >= threshold and time.monotonic() - start < max_wait:
        busy = others_busy(2.0, [os.getpid()])
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    return {"others_cores": busy, "waited_s": round(time.monotonic() - start, 1),
            "loadavg1": float(load)}


#: How hard to try for a quiet machine (set by the runner): before a measured cell, wait up to
#: ``wait`` s for other work to use < ``threshold`` cores; if other work still took more than
#: ``threshold`` cores during the cell, run it again, up to ``retries`` times.
QUIET = {"retries": 1, "wait": 60.0, "threshold": 0.35}


def quiet_cell(fn: Callable[..., dict], *args) -> dict:
    """Run ``fn(*args)``, a measured cell, again (see QUIET) when other work disturbed it.
    Returns the least disturbed attempt; ``others_cores_attempts`` lists every attempt's."""
    attempts: list[dict] = []
    for _ in range(QUIET["retries"] + 1):
        if QUIET["wait"] > 0:
            wait_quiet(QUIET["wait"], QUIET["threshold"])
        result = fn(*args)
        attempts.append(result)
        if result.get("others_cores", 0.0) < QUIET["threshold"]:
            break
    best = min(attempts, key=lambda r: r.get("others_cores", 0.0))
    best["others_cores_attempts"] = [r.get("others_cores") for r in attempts]
    return best


def health_each(server: Server, count: int, timeout: float = 10.0) -> dict[int, dict]:
    """``process`` of GET /health from each of ``count`` processes sharing the server's port
    (``notes serve --workers N``: one worker answers each request), by pid: asked again until
    ``count`` different pids answered or ``timeout`` s passed (then fewer)."""
    seen: dict[int, dict] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < count and time.monotonic() < deadline:
        process = server.health()
        seen[process["pid"]] = process
    return seen


def summed_counts(before: dict[int, dict], after: dict[int, dict]) -> dict[str, int]:
    """The integer counters of :func:`health_each` readings, after - before, summed over the
    processes read both times (``processes``: how many)."""
    out: dict[str, int] = {"processes": 0}
    for pid, reading in after.items():
        if pid not in before:
            continue
        out["processes"] += 1
        for key, value in counts_since(before[pid], reading).items():
            if key != "pid":
                out[key] = out.get(key, 0) + value
    return out
