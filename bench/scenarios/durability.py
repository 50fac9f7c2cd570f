"""9a. Durability: ack latency and commits per 1,000 edits, NOTES_DURABILITY=log vs debounce.

Two server processes are started at once, each on a fresh database of the run's cluster: one
with ``NOTES_DURABILITY=log`` (an ``ack`` is sent once the edit's group commit is done), one with
``debounce`` (acked at once; only saves write rows; updates still reach other processes by
NOTIFY-only commits). Each load runs on one and then the other (the idle one costs nothing), so
both see the same machine, the same load and the same clients in the same run:

- ``typing``: C JSON clients (the authors' minimal OT client of ``bench.scenarios.authors``: one
  edit awaiting its ack, keystrokes made meanwhile buffered and sent together), each typing 5
  keystrokes/s (a fast typist) at random places: 20 and 100 clients on 5 notes, and (full run)
  200 clients on 20 notes (1,000 keystrokes/s; 40 authors a note would saturate the server);
- ``burst``: 100 clients on 5 notes each send one keystroke at the same instant (a wall-clock
  time shared by the load processes), ``rounds`` times, 0.5 s apart.

Measured per cell: the ack round trip (edit sent -> ``ack`` arrived, per edit), keystroke -> ack
(includes a keystroke's wait in the buffer), the latency of the tokens at the other clients of
the note (with ``log`` nobody hears of an edit before it is stored: the broadcast waits for the
same group commit as the author's ack), and the writes from the server's own
counters (``GET /health``: ``log_commits``, ``log_entries``, ``saves``), counted from before the
first keystroke to debounce + 1 s after the last (so each note's save after the typing stops is
in). Commits per 1,000 edits = 1,000 x (log commits + saves) / edit messages; the group-commit
factor = log entries / log commits. WAL flushes (``pg_stat_wal.wal_sync``, the cluster's) are the
disk's view of the same: NOTIFY-only commits write a commit record but do not flush it.

The anchor is ShareDB's one write per op: 1,000 commits per 1,000 edits. The commit floor (same
run, same cluster, one asyncpg connection): a one-row INSERT committed alone, a NOTIFY alone, and
``SELECT 1`` (a round trip, no commit), each 500 times, plus 8 connections committing INSERTs
at once (PostgreSQL's own WAL group flush); and the server's own commit path without the server
(``bench/journal_floor.py``, the server's code in a process of its own, one entry at a time): the
store's group-commit statement, and the journal around it (``Journal.write`` until its future
is done), each 500 times.

Check: every token typed is in its note's final text exactly once.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from array import array

from bench import harness as h
from bench.clients import TOKEN_STR, open_many
from bench.scenarios.authors import Author, drained, each_token_once, merged, pooled, type_steadily

MODES = ("log", "debounce")
RATE = 5.0  # keystrokes/s per client
DEBOUNCE, MAX_WAIT = 2.0, 10.0  # the server defaults, set explicitly


class Typist(Author):
    """An author that also times each keystroke to the ack of the edit that carried it."""

    def __init__(self, aid: int, seed: int):
        super().__init__(aid, seed)
        self.key_ack = array("q")

    def on_message(self, payload: bytes, now: int) -> None:
        if self.awaiting is not None and b'"type":"ack"' in payload[:24]:
            for m in TOKEN_STR.finditer(self.awaiting):
                self.key_ack.append(now - int(m.group(3)))
        super().on_message(payload, now)


async def typist_worker(index: int, conf: dict, ctl: h.Control) -> None:
    port, notes, ids = conf["port"], conf["notes"], conf["ids"]
    typists, errors = await open_many(
        len(ids), lambda i: Typist(ids[i], ids[i] * 7919 + 3).open(
            port, f"/notes/{notes[ids[i] % len(notes)]}/live?name=t{ids[i]}"), 32)
    typists = [t for t in typists if t is not None]
    ctl.report("ready", {"joined": len(typists), "errors": errors})
    await ctl.wait_go()
    # The main process wrote a common start time (wall clock, ns) before setting go.
    start = time.monotonic() + (ctl.shared.value - time.time_ns()) / 1e9
    burst = conf.get("burst")
    if burst:
        for r in range(burst["rounds"]):
            await asyncio.sleep(max(0.0, start + r * burst["interval"] - time.monotonic()))
            for t in typists:
                if t.ws.is_open:
                    t.keystroke()
        await drained(typists, conf["drain"])
    else:
        await type_steadily(typists, conf["rate"], start, conf["seconds"], conf["drain"])
    ctl.report("typed", {**pooled(typists, rtt="ack_rtt", key_ack="key_ack", lat="lat"),
                         "typed": {t.aid: t.seq for t in typists},
                         "edits": sum(len(t.ack_rtt) for t in typists),
                         "idle": all(t.idle for t in typists)})
    await ctl.wait_stop()
    await asyncio.gather(*(t.ws.close() for t in typists), return_exceptions=True)
    ctl.report("result", None)


def run_cell(cluster: h.Cluster, server: h.Server, mode: str, load: dict) -> dict:
    clients, note_count = load["clients"], load["notes"]
    notes = [server.create_note(f"durability {i}", "") for i in range(note_count)]
    ids = list(range(1, clients + 1))
    confs = [{"port": server.port, "notes": notes, "ids": part, "rate": RATE,
              "seconds": load.get("seconds", 0), "burst": load.get("burst"), "drain": 60}
             for part in h.split(ids, 2)]
    workers = h.Workers(typist_worker, confs).start()
    try:
        ready = workers.collect("ready", 120)
        join_errors = sum(len(r["errors"]) for r in ready)
        h.wait_stats_flush()
        wal0, health0 = h.wal_stats(server.env["NOTES_DATABASE_URL"]), server.health()
        meters = h.CellMeters([server], cluster, workers.pids)
        workers.shared.value = time.time_ns() + 200_000_000
        workers.go.set()
        typed_parts = workers.collect("typed", load.get("seconds", 0) + 180)
        cpu = meters.read(["server_cpu"])
        time.sleep(DEBOUNCE + 1.0)  # the save each note gets once its typing stops
        health = h.counts_since(health0, server.health())
        h.wait_stats_flush()
        wal1 = h.wal_stats(server.env["NOTES_DATABASE_URL"])
        texts = [server.get_note(n)["content"] for n in notes]
        workers.stop.set()
        workers.collect("result", 60)
    finally:
        workers.join()
    typed: dict[int, int] = {}
    for p in typed_parts:
        typed.update({int(k): v for k, v in p["typed"].items()})
    pool = merged(typed_parts, "rtt", "key_ack", "lat")
    errors, closed = pool["errors"], pool["closed"]
    # Every token in its note's text exactly once.
    tokens_ok = all(each_token_once(text, {a: n for a, n in typed.items() if a % note_count == i})
                    for i, text in enumerate(texts))
    edits = sum(p["edits"] for p in typed_parts)
    keystrokes = sum(typed.values())
    commits, entries, saves = health["log_commits"], health["log_entries"], health["saves"]
    wal = h.counts_since(wal0, wal1)

    def per_1000(n: int) -> float | None:
        return round(1000 * n / edits, 1) if edits else None

    cell = {
        "mode": mode, "load": load["name"], "clients": clients, "notes": note_count,
        "rate_per_client": None if load.get("burst") else RATE, "seconds": load.get("seconds"),
        "burst": load.get("burst"), "keystrokes": keystrokes, "edits": edits,
        "ack_rtt_ms": h.percentiles(pool["rtt"]),
        "keystroke_to_ack_ms": h.percentiles(pool["key_ack"]),
        "others_see_ms": h.percentiles(pool["lat"]),
        # log: every log commit stores rows and is flushed to disk before the acks go out;
        # debounce: the journal's commits carry NOTIFYs only (no row, no WAL flush).
        "log_commits": commits, "log_entries": entries, "saves": saves,
        "commits": commits + saves, "commits_per_1000_edits": per_1000(commits + saves),
        "log_commits_per_1000_edits": per_1000(commits),
        "durable_writes_per_1000_edits": per_1000(saves + (commits if mode == "log" else 0)),
        "saves_per_1000_edits": per_1000(saves),
        "group_commit_factor": round(entries / commits, 2) if commits else None,
        "wal": wal, "wal_syncs_per_1000_edits": per_1000(wal["syncs"]),
        "durability_reported": health0["durability"],
        "catch_ups": health["catch_ups"],
        "errors": dict(errors), "closed": len(closed), "join_errors": join_errors, **cpu,
        "text_ok": tokens_ok and not errors and not closed and join_errors == 0
        and health0["durability"] == mode and all(p["idle"] for p in typed_parts),
    }
    if load.get("burst"):
        rounds = load["burst"]["rounds"]
        cell["log_commits_per_burst"] = round(commits / rounds, 2)
        cell["edits_per_burst"] = round(edits / rounds, 1)
    return cell


# --- the commit floor ---------------------------------------------------------------------------


def commit_floor(db_url: str, count: int = 500) -> dict:
    """What one commit costs on this cluster, without the server: asyncpg, one connection."""
    import asyncpg

    async def go() -> dict:
        conn = await asyncpg.connect(db_url)
        out: dict = {}
        try:
            await conn.execute("CREATE TABLE IF NOT EXISTS bench_floor "
                               "(id bigserial PRIMARY KEY, b bytea)")
            cases = {"insert_commit": ("INSERT INTO bench_floor (b) VALUES ($1)", (b"x" * 40,)),
                     "notify_only": ("SELECT pg_notify('bench_floor', 'x')", ()),
                     "select_1": ("SELECT 1", ())}
            for name, (statement, args) in cases.items():
                await conn.execute("SELECT pg_stat_force_next_flush()")
                await asyncio.sleep(1.2)
                w0 = await _wal(conn)
                lat = []
                for _ in range(count):
                    t0 = time.perf_counter_ns()
                    await conn.execute(statement, *args)
                    lat.append(time.perf_counter_ns() - t0)
                await conn.execute("SELECT pg_stat_force_next_flush()")
                await asyncio.sleep(1.2)
                w1 = await _wal(conn)
                out[name] = {"latency_ms": h.percentiles(lat),
                             "per_s": round(count / (sum(lat) / 1e9)),
                             "wal_syncs": w1 - w0}
            # 8 connections committing at once: PostgreSQL flushes WAL for many commits at once.
            others = [await asyncpg.connect(db_url) for _ in range(8)]
            try:
                lat = []

                async def one(c) -> None:
                    for _ in range(count // 8):
                        t0 = time.perf_counter_ns()
                        await c.execute("INSERT INTO bench_floor (b) VALUES ($1)", b"x" * 40)
                        lat.append(time.perf_counter_ns() - t0)
                    await c.execute("SELECT pg_stat_force_next_flush()")

                await asyncio.sleep(1.2)
                w0 = await _wal(conn)
                t0 = time.perf_counter()
                await asyncio.gather(*(one(c) for c in others))
                wall = time.perf_counter() - t0
                await asyncio.sleep(1.2)
                w1 = await _wal(conn)
                out["insert_commit_8_connections"] = {
                    "latency_ms": h.percentiles(lat), "per_s": round(len(lat) / wall),
                    "wal_syncs": w1 - w0, "commits": len(lat)}
            finally:
                await asyncio.gather(*(c.close() for c in others))
            await conn.execute("DROP TABLE bench_floor")
        finally:
            await conn.close()
        return out

    async def _wal(conn) -> int:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        return int(await conn.fetchval("SELECT wal_sync FROM pg_stat_wal"))

    return asyncio.run(go())


# --- the scenario -------------------------------------------------------------------------------


def journal_floor(cluster: h.Cluster, count: int) -> dict:
    """The server's own commit path without the server (``bench/journal_floor.py``, run with the
    server's code in a process of its own): one entry at a time, through the store
    (``append``) and through the journal (``journal``), on a database the server migrated."""
    db = cluster.fresh_database("durability_journal_floor")
    server = h.Server(db, name="durability-journal-floor").start()
    try:
        note_id = server.create_note("journal floor", "")
    finally:
        server.stop()
    done = subprocess.run([sys.executable, str(h.ROOT / "bench" / "journal_floor.py"), db,
                           note_id, str(count)], env=h.server_code_env(), capture_output=True,
                          text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"journal floor failed:\n{done.stderr[-3000:]}")
    raw = json.loads(done.stdout.strip().splitlines()[-1])
    return {f"log_{name}": {"latency_ms": h.percentiles(lat),
                            "per_s": round(len(lat) / (sum(lat) / 1e9)), "wal_syncs": None}
            for name, lat in raw.items()}


def loads(quick: bool) -> list[dict]:
    seconds = 4 if quick else 12
    out = [{"name": "typing", "clients": 20, "notes": 5, "seconds": seconds},
           {"name": "typing", "clients": 100, "notes": 5, "seconds": seconds},
           {"name": "burst", "clients": 100, "notes": 5,
            "burst": {"rounds": 8 if quick else 20, "interval": 0.5}}]
    if not quick:  # 1,000 edits/s, 10 clients a note (20 a note would saturate the server)
        out.insert(2, {"name": "typing", "clients": 200, "notes": 20, "seconds": seconds})
    return out


def run(cluster: h.Cluster, quick: bool) -> dict:
    servers: dict[str, h.Server] = {}
    cells = []
    env = {"NOTES_SAVE_DEBOUNCE": str(DEBOUNCE), "NOTES_SAVE_MAX_WAIT": str(MAX_WAIT)}
    try:
        for mode in MODES:
            db = cluster.fresh_database(f"durability_{mode}")
            servers[mode] = h.Server(db, env={**env, "NOTES_DURABILITY": mode},
                                     name=f"durability-{mode}").start()
        settings = h.pg_settings(servers["log"].env["NOTES_DATABASE_URL"])
        floor = commit_floor(cluster.fresh_database("durability_floor"), 200 if quick else 500)
        floor.update(journal_floor(cluster, 200 if quick else 500))
        print("  commit floor: " + ", ".join(
            f"{k} p50 {h.fmt_ms(v['latency_ms']['p50'])} p99 {h.fmt_ms(v['latency_ms']['p99'])} ms"
            + ("" if v["wal_syncs"] is None else f" ({v['wal_syncs']} WAL syncs)")
            for k, v in floor.items()), flush=True)
        for load in loads(quick):
            for mode in MODES:
                c = h.quiet_cell(run_cell, cluster, servers[mode], mode, load)
                cells.append(c)
                a = c["ack_rtt_ms"]
                print(f"  durability {mode:<8} {load['name']:<6} C={c['clients']:<4} "
                      f"{c['edits']} edits: ack p50 {h.fmt_ms(a['p50'])} p99 {h.fmt_ms(a['p99'])}"
                      f" ms; {c['log_commits']} log commits + {c['saves']} saves = "
                      f"{c['commits_per_1000_edits']}/1000 edits (factor "
                      f"{c['group_commit_factor']}), WAL syncs {c['wal']['syncs']}; server "
                      f"{c['server_cpu']['cores']} pg {c['postgres_cpu']['cores']} others "
                      f"{c['others_cores_attempts']} ok={c['text_ok']}", flush=True)
    finally:
        h.stop_all(list(servers.values()))
    loaded = [c for c in cells if c["mode"] == "log" and c["clients"] == 100]
    return {
        "cells": cells, "commit_floor": floor, "pg_settings": settings,
        "anchor": "ShareDB commits every op before publishing it: 1,000 commits per 1,000 edits",
        "target": {
            "what": "log: commits per 1,000 edits under load (100 clients typing; burst) vs "
                    "ShareDB's 1,000",
            "measured": {f"{c['load']} {c['clients']}": c["commits_per_1000_edits"]
                         for c in loaded},
            "met": bool(loaded) and all((c["commits_per_1000_edits"] or 0) < 1000
                                        for c in loaded),
        },
        "ok": all(c["text_ok"] for c in cells),
    }


def rows(result: dict) -> list[list[str]]:
    out = []
    for c in result["cells"]:
        a = c["ack_rtt_ms"]
        out.append([f"durability {c['mode']} {c['load']} C={c['clients']}",
                    f"ack p50 {h.fmt_ms(a['p50'])} / p99 {h.fmt_ms(a['p99'])} / max "
                    f"{h.fmt_ms(a['max'])} ms",
                    f"{c['commits_per_1000_edits']} commits/1000 edits, factor "
                    f"{c['group_commit_factor']}, server {c['server_cpu']['cores']} cores",
                    "ok" if c["text_ok"] else "WRONG"])
    return out
