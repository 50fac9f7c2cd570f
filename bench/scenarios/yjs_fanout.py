"""7. Yjs fan-out: one Yjs writer, N Yjs subscribers on one document, against four servers.

The servers, each with its defaults, one process each, started by this scenario one after the
other on free ports of 127.0.0.1:

* ``ours``: ``/yjs/{note_id}`` of ``python -m notes serve`` (the harness's server, on a fresh
  database; the note is made with ``POST /notes`` first);
* ``pycrdt-websocket``: its ``WebsocketServer`` under its ``ASGIServer`` app with uvicorn
  (bench/peers/pycrdt_websocket_server.py; ``pip install pycrdt-websocket uvicorn``);
* ``y-websocket-server``: the npm ``@y/websocket-server``, the reference y-websocket server
  (bench/peers/y-websocket-server.mjs);
* ``hocuspocus``: the npm ``@hocuspocus/server``, a bare ``Server`` (bench/peers/hocuspocus.mjs).

The node servers need ``npm ci`` in bench/peers (exact versions in its package-lock.json). A
server whose packages are missing, or that does not come up, fails with a message saying so;
the others still run. ``BENCH_YJS_SERVERS=ours,hocuspocus`` runs only those.

The clients (bench/ywire.py) are the same for every server: the writer is a pycrdt ``Doc``
that syncs, then appends one ``<tSEQ.NS>`` marker per keystroke at R edits/s to the ``content``
Text, one transaction and one update message each, NS being ``time.time_ns()`` when the
keystroke was made; subscribers sync from empty (answer the server's step 1 with an empty
step 2, send a step 1 with an empty state vector, synced on the server's step 2) and then find
the markers in the raw binary frames without decoding Yjs. Latency is keystroke to the arrival of
the frame's bytes at each subscriber, over every marker at every subscriber; delivery = distinct
markers received by all subscribers / (markers typed x N). After the subscribers have drained, a
fresh peer syncs and decodes the server's document: its text must be the writer's.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
import uuid
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import harness as h
from bench.clients import open_many, wait_until
from bench.wsclient import HandshakeError
from bench.ywire import Subscriber, Writer, fetch_text, make_wire

PEERS = Path(__file__).resolve().parent.parent / "peers"
SERVERS = ["ours", "pycrdt-websocket", "y-websocket-server", "hocuspocus"]
RATE = 50  # edits/s: the fastest rate of the fanout scenario
DRAIN_S = 30  # after the last keystroke, how long subscribers may take to receive every marker
PIP_HINT = "pip install pycrdt-websocket==0.16.5 uvicorn==0.54.0"
NPM_HINT = "cd bench/peers && npm ci"


# --- load processes -----------------------------------------------------------------------------


def _wire(conf: dict):
    return make_wire(conf["wire"], conf["path"], conf["document"])


async def subscriber_worker(index: int, conf: dict, ctl: h.Control) -> None:
    port = conf["port"]
    subs, errors = await open_many(
        conf["count"], lambda i: Subscriber(_wire(conf)).open(port, conf["join_timeout"]), 32)
    subs = [s for s in subs if s is not None]
    ctl.report("ready", {"joined": len(subs), "errors": errors[:3], "error_count": len(errors),
                         "join_ns": [s.join_ns for s in subs]})
    await ctl.wait_stop()
    total = ctl.shared.value
    await wait_until(lambda: all(s.markers >= total or not s.open_now for s in subs),
                     conf["drain"])
    ctl.report("result", [{"markers": s.markers, "duplicates": s.duplicates,
                           "lat": s.lat.tobytes(), "last_ns": s.last_ns, "frames": s.frames,
                           "other_frames": s.other_frames, "close": s.close_code,
                           "error": s.error} for s in subs])
    await ctl.command()  # "close": after the main process has checked the server's text
    await asyncio.gather(*(s.ws.close() for s in subs), return_exceptions=True)


async def writer_worker(index: int, conf: dict, ctl: h.Control) -> None:
    writer = await Writer(_wire(conf)).open(conf["port"], conf["join_timeout"])
    ctl.report("ready", {"extensions": writer.ws.extensions})
    await ctl.wait_go()
    rate, total = conf["rate"], conf["edits"]
    typed = 0
    start = time.monotonic()
    for seq in range(total):
        delay = start + seq / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if writer.error or not writer.ws.is_open:
            break
        writer.type_marker(seq)
        typed += 1
    last_ns = time.time_ns()
    typed_s = time.monotonic() - start
    await asyncio.sleep(0.2)  # let the last echoes and statuses in (counted, not timed)
    ctl.report("result", {"typed": typed, "typed_s": round(typed_s, 3), "last_ns": last_ns,
                          "text": writer.value, "bytes_out": writer.bytes_out,
                          "frames_in": writer.frames_in, "echoes": writer.echoes,
                          "statuses": writer.statuses, "error": writer.error,
                          "close": writer.ws.close_code})
    await ctl.command()
    await writer.ws.close()


# --- servers ------------------------------------------------------------------------------------


def _preexec() -> None:
    h.raise_nofile()
    os.setpgrp()


class PeerServer:
    """A peer server as a child process (``argv PORT``) that prints ``ready PORT`` when up."""

    def __init__(self, name: str, argv: list[str]):
        self.name = name
        self.port = h.free_port()
        self.argv = argv + [str(self.port)]
        h.RESULTS.mkdir(parents=True, exist_ok=True)
        self.log_path = h.RESULTS / f"{name}-{self.port}.log"
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, timeout: float = 60.0) -> PeerServer:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, cwd=h.ROOT,
                                            preexec_fn=_preexec)
        deadline = time.monotonic() + timeout
        while f"ready {self.port}" not in self.log():
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early ({self.process.returncode}):\n"
                                   + self.log()[-3000:])
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not come up in {timeout} s:\n"
                                   + self.log()[-3000:])
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 15.0) -> int:
        code = h.terminate(self.process, timeout)
        self.process = None
        return code


@dataclass
class Target:
    """One server under test: how to reach it, which process to measure, how to make a
    document (``new_document(tag)`` -> URL path and the document name sent in messages)."""

    name: str
    wire: str
    port: int
    pid: int
    new_document: Callable[[str], tuple[str, str]]
    stop: Callable[[], object]


def _doc_name(tag: str) -> str:
    return f"yjs-fanout-{tag}-{uuid.uuid4().hex[:8]}"


def missing(name: str) -> str | None:
    """Why a server cannot be started here, or None."""
    if name == "pycrdt-websocket":
        absent = [m for m in ("pycrdt.websocket", "uvicorn") if not _has_module(m)]
        if absent:
            return (f"{', '.join(absent)} not installed in {sys.executable}: {PIP_HINT} "
                    f"(not a dependency of notes)")
    elif name in ("y-websocket-server", "hocuspocus"):
        if shutil.which("node") is None:
            return "node is not on the PATH (apt-get install nodejs)"
        package = "@y/websocket-server" if name == "y-websocket-server" else "@hocuspocus/server"
        if not (PEERS / "node_modules" / package / "package.json").exists():
            return f"{package} is not installed in bench/peers/node_modules: {NPM_HINT}"
    return None


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def start(name: str, cluster: h.Cluster) -> Target:
    why = missing(name)
    if why:
        raise RuntimeError(f"{name}: {why}")
    if name == "ours":
        server = h.Server(cluster.fresh_database("yjs_fanout"), name="yjs_fanout").start()

        def note(tag: str) -> tuple[str, str]:
            return f"/yjs/{server.create_note(f'yjs_fanout {tag}', '')}", ""

        return Target(name, "y-websocket", server.port, server.pid, note, server.stop)
    node = shutil.which("node") or "node"
    argv = {"pycrdt-websocket": [sys.executable, str(PEERS / "pycrdt_websocket_server.py")],
            "y-websocket-server": [node, str(PEERS / "y-websocket-server.mjs")],
            "hocuspocus": [node, str(PEERS / "hocuspocus.mjs")]}[name]
    peer = PeerServer(name, argv).start()
    if name == "hocuspocus":
        def document(tag: str) -> tuple[str, str]:
            return "/", _doc_name(tag)  # the document is named in every message, not the URL

        return Target(name, "hocuspocus", peer.port, peer.pid, document, peer.stop)

    def room(tag: str) -> tuple[str, str]:
        doc = _doc_name(tag)
        return f"/{doc}", doc

    return Target(name, "y-websocket", peer.port, peer.pid, room, peer.stop)


def probe(target: Target, timeout: float = 15.0) -> float:
    """One subscriber joins a new document and leaves; a clear error (never a hang) if the
    server does not speak the protocol there. Returns the join time in ms."""
    path, document = target.new_document("probe")

    async def go() -> float:
        sub = await Subscriber(make_wire(target.wire, path, document)).open(target.port, timeout)
        await sub.ws.close()
        return sub.join_ns / 1e6

    try:
        return round(asyncio.run(asyncio.wait_for(go(), timeout + 5)), 2)
    except HandshakeError as error:
        where = "/yjs/{note_id}" if target.name == "ours" else path
        raise RuntimeError(f"{target.name}: the websocket upgrade of {where} was answered "
                           f"'{error}': no Yjs endpoint there (port {target.port})") from None
    except (ConnectionError, TimeoutError, asyncio.TimeoutError, OSError) as error:
        raise RuntimeError(f"{target.name}: ws://127.0.0.1:{target.port}{path} did not sync "
                           f"one subscriber: {type(error).__name__}: {error}") from None


def versions() -> dict:
    out: dict[str, str | None] = {}
    for dist in ("pycrdt", "pycrdt-websocket", "uvicorn", "websockets", "sanic"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    node = shutil.which("node")
    out["node"] = (subprocess.run([node, "--version"], capture_output=True, text=True)
                   .stdout.strip() if node else None)
    for package in ("@y/websocket-server", "@hocuspocus/server", "yjs", "y-protocols", "ws",
                    "crossws", "lib0"):
        meta = PEERS / "node_modules" / package / "package.json"
        out[package] = json.loads(meta.read_text())["version"] if meta.exists() else None
    return out


# --- one cell -----------------------------------------------------------------------------------


def _end(workers: list[h.Workers], clean: bool) -> None:
    for w in workers:
        if clean:
            w.send("close")
            w.join(30)
        else:
            for p in w.procs:
                if p.is_alive():
                    p.kill()
            w.join(5)


def run_cell(target: Target, n: int, rate: float, seconds: float) -> dict:
    path, document = target.new_document(f"n{n}")
    base = {"port": target.port, "wire": target.wire, "path": path, "document": document,
            "join_timeout": 60}
    procs = 1 if n <= 20 else 2 if n <= 200 else 3
    subs = h.Workers(subscriber_worker, [{**base, "count": len(part), "drain": DRAIN_S}
                                         for part in h.split(list(range(n)), procs)])
    writer = h.Workers(writer_worker, [{**base, "rate": rate, "edits": int(rate * seconds)}])
    clean = False
    try:
        # The writer opens the document alone first, then the subscribers join it. (With them
        # joining a document no one has opened yet, pycrdt-websocket 0.16.5 leaves most of them
        # waiting forever: every connection that finds the new room not started yet tries to
        # start it, and waits for the start lock that the running room holds.)
        writer.start()
        wready = writer.collect("ready", 60)[0]
        subs.start()
        ready = subs.collect("ready", 240)
        joined = sum(r["joined"] for r in ready)
        join_errors = sum(r["error_count"] for r in ready)
        if joined == 0:
            raise RuntimeError(f"no subscriber joined: {ready[0]['errors']}")
        server_cpu = h.CpuMeter([target.pid])
        pg_cpu = h.CpuMeter(h.postgres_pids())
        load_cpu = h.CpuMeter(subs.pids + writer.pids)
        machine = h.MachineMeter()
        writer.go.set()
        w = writer.collect("result", seconds + 60)[0]
        subs.shared.value = w["typed"]
        subs.stop.set()
        results = [r for part in subs.collect("result", DRAIN_S + 60) for r in part]
        cpu, pg, lcpu, busy = server_cpu.read(), pg_cpu.read(), load_cpu.read(), machine.read()
        try:
            stored = asyncio.run(fetch_text(target.port, make_wire(target.wire, path, document)))
            check_error = None
        except Exception as error:  # noqa: BLE001 - reported in the cell
            stored, check_error = None, f"{type(error).__name__}: {error}"
        clean = True
    finally:
        _end([subs, writer], clean)
    lat: list[int] = []
    for r in results:
        a = array("q")
        a.frombytes(r["lat"])
        lat.extend(a)
    join_ns = [x for r in ready for x in r["join_ns"]]
    received = sum(r["markers"] for r in results)
    complete = sum(1 for r in results if r["markers"] == w["typed"])
    last = max((r["last_ns"] for r in results), default=0)
    text_ok = stored == w["text"]
    delivery = round(received / (w["typed"] * n), 5) if w["typed"] else None
    return {
        "server": target.name, "subscribers": n, "rate": rate, "seconds": seconds,
        "typed": w["typed"], "typed_s": w["typed_s"], "latency_ms": h.percentiles(lat),
        "delivery": delivery, "subscribers_complete": complete,
        "duplicates": sum(r["duplicates"] for r in results),
        "drain_ms": round((last - w["last_ns"]) / 1e6, 1) if last else None,
        "join_ms": h.percentiles(join_ns), "joined": joined, "join_errors": join_errors,
        "join_error_samples": [e for r in ready for e in r["errors"]][:3],
        "closed_early": sum(1 for r in results if r["close"] is not None or r["error"]),
        "close_codes": sorted({r["close"] for r in results if r["close"] is not None}),
        "subscriber_errors": [r["error"] for r in results if r["error"]][:3],
        "frames_per_subscriber": round(sum(r["frames"] for r in results) / max(1, len(results)),
                                       1),
        "writer": {k: w[k] for k in ("bytes_out", "frames_in", "echoes", "statuses", "error",
                                     "close")},
        "server_cpu": cpu, "postgres_cpu": pg, "loadgen_cpu": lcpu, "machine_cores": busy,
        "others_cores": round(max(0.0, busy - cpu["cores"] - lcpu["cores"] - pg["cores"]), 2),
        "extensions": wready["extensions"] or "none",
        "text_ok": text_ok, "text_chars": len(w["text"]), "check_error": check_error,
        "ok": text_ok and delivery == 1.0 and join_errors == 0 and not w["error"],
    }


# --- the scenario -------------------------------------------------------------------------------


def selected() -> list[str]:
    wanted = os.environ.get("BENCH_YJS_SERVERS", "")
    names = [x.strip() for x in wanted.split(",") if x.strip()] or SERVERS
    unknown = [x for x in names if x not in SERVERS]
    if unknown:
        raise ValueError(f"BENCH_YJS_SERVERS: unknown {unknown}; known: {SERVERS}")
    return names


def ratios(servers: dict) -> dict:
    """Each server's p50, p99 and server CPU over ours, per N (None where either is missing)."""
    ours = {c["subscribers"]: c for c in servers.get("ours", {}).get("cells", [])
            if "error" not in c}
    out: dict = {}
    for name, entry in servers.items():
        if name == "ours":
            continue
        for c in entry.get("cells", []):
            base = ours.get(c["subscribers"])
            if "error" in c or base is None:
                continue

            def over(a, b):
                return round(a / b, 2) if a is not None and b else None

            out.setdefault(name, {})[str(c["subscribers"])] = {
                "p50": over(c["latency_ms"]["p50"], base["latency_ms"]["p50"]),
                "p99": over(c["latency_ms"]["p99"], base["latency_ms"]["p99"]),
                "server_cpu": over(c["server_cpu"]["cores"], base["server_cpu"]["cores"]),
            }
    return out


def run(cluster: h.Cluster, quick: bool) -> dict:
    sizes = (10, 100) if quick else (100, 500)
    seconds = 3 if quick else 8
    names = selected()
    result: dict = {"rate": RATE, "seconds": seconds, "sizes": list(sizes), "drain_s": DRAIN_S,
                    "versions": versions(), "servers": {}}
    print(f"  versions: {result['versions']}", flush=True)
    for name in names:
        entry: dict = {"cells": []}
        result["servers"][name] = entry
        try:
            target = start(name, cluster)
        except Exception as error:  # noqa: BLE001 - this server fails, the others run
            entry["error"] = str(error) if isinstance(error, RuntimeError) else \
                traceback.format_exc()
            print(f"  yjs_fanout {name}: FAILED: {_gist(entry['error'])}", flush=True)
            continue
        try:
            entry["probe_join_ms"] = probe(target)
            for n in sizes:
                try:
                    cell = h.quiet_cell(run_cell, target, n, RATE, seconds)
                except Exception:  # noqa: BLE001 - reported as this cell's failure
                    cell = {"server": name, "subscribers": n, "error": traceback.format_exc()}
                    print(f"  yjs_fanout {name} N={n}: FAILED\n{cell['error']}", flush=True)
                    entry["cells"].append(cell)
                    continue
                entry["cells"].append(cell)
                lat = cell["latency_ms"]
                print(f"  yjs_fanout {name:<18} N={n:<4} {RATE}/s  p50 {h.fmt_ms(lat['p50'])} "
                      f"p99 {h.fmt_ms(lat['p99'])} max {h.fmt_ms(lat['max'])} ms  delivery "
                      f"{cell['delivery']}  join p50 {h.fmt_ms(cell['join_ms']['p50'])} ms  "
                      f"server cpu {cell['server_cpu']['cores']}  others "
                      f"{cell['others_cores_attempts']}  text "
                      f"{'ok' if cell['text_ok'] else 'WRONG'}", flush=True)
        except Exception as error:  # noqa: BLE001 - this server fails, the others run
            entry["error"] = str(error) if isinstance(error, RuntimeError) else \
                traceback.format_exc()
            print(f"  yjs_fanout {name}: FAILED: {_gist(entry['error'])}", flush=True)
        finally:
            with contextlib.suppress(Exception):
                target.stop()
    result["ratios"] = ratios(result["servers"])
    ours = result["servers"].get("ours")
    result["ok"] = all(
        "error" not in e and all("error" not in c and c["text_ok"] for c in e["cells"])
        for e in result["servers"].values()
    ) and (ours is None or all(c.get("ok") for c in ours["cells"]))
    return result


def _check(c: dict) -> str:
    if not c["text_ok"]:
        return "WRONG" + (f" ({c['check_error']})" if c.get("check_error") else "")
    if c["delivery"] != 1.0 or c["join_errors"] or c["closed_early"]:
        return (f"lost {1 - (c['delivery'] or 0):.2%}, {c['join_errors']} not joined, "
                f"{c['closed_early']} closed")
    return "ok"


def _gist(error: str) -> str:
    """The first line of an error, and its last one (a server log's exception) if different."""
    lines = [x.strip() for x in error.strip().splitlines() if x.strip()]
    if not lines:
        return "?"
    return lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"


def rows(result: dict) -> list[list[str]]:
    out = []
    for name, entry in result["servers"].items():
        for c in entry["cells"]:
            if "error" in c:
                out.append([f"yjs_fanout N={c['subscribers']} {name}",
                            "FAILED: " + c["error"].strip().splitlines()[-1], "", ""])
                continue
            lat = c["latency_ms"]
            ratio = result["ratios"].get(name, {}).get(str(c["subscribers"]))
            vs = (f", vs ours p99 x{ratio['p99']} cpu x{ratio['server_cpu']}"
                  if ratio else "")
            out.append([f"yjs_fanout N={c['subscribers']} @{c['rate']:g}/s {name}",
                        f"p50 {h.fmt_ms(lat['p50'])} / p95 {h.fmt_ms(lat['p95'])} / p99 "
                        f"{h.fmt_ms(lat['p99'])} / max {h.fmt_ms(lat['max'])} ms",
                        f"delivery {c['delivery']:.4f}, server {c['server_cpu']['cores']} "
                        f"cores, others {c['others_cores']}{vs}",
                        _check(c)])
        if "error" in entry:
            out.append([f"yjs_fanout {name}", "FAILED: " + _gist(entry["error"]), "", ""])
    return out
