"""1. Fan-out latency: one note, N subscribers, one writer at R edits/s.

The writer is an OT client (``notes.client.ClientState``): it types one token per tick at the end
of its text; a keystroke made while an edit awaits its ack goes into the buffer (composed), so a
slow server shows as latency, never as a wrong text. Each token carries the keystroke's
``time.time_ns()``; every subscriber times every token it receives (edit-sent to edit-received).
Delivery ratio = tokens received by all subscribers / (tokens typed x N).
"""

from __future__ import annotations

import asyncio
import json
import os
import time

from bench import harness as h
from bench.clients import Follower, open_many, sha, token, wait_until
from bench.wsclient import WsClient


async def subscriber_worker(index: int, conf: dict, ctl: h.Control) -> None:
    """``count`` subscribers; once stopped, each waits for the revision in ``ctl.shared`` (with
    ``conf["tokens"]``: for that many tokens, as on another instance, which numbers revisions
    its own way)."""
    port, path = conf["port"], conf["path"]
    subs, errors = await open_many(conf["count"], lambda i: Follower().open(port, path), 32)
    subs = [s for s in subs if s is not None]
    ctl.report("ready", {"joined": len(subs), "errors": errors})
    await ctl.wait_stop()
    final = ctl.shared.value

    def reached(s: Follower) -> bool:
        return (len(s.lat) if conf.get("tokens") else s.rev) >= final

    await wait_until(lambda: all(reached(s) or not s.open_now for s in subs), conf["drain"])
    result = []
    for s in subs:
        result.append({"rev": s.rev, "sha": sha(s.text or ""), "tokens": len(s.lat),
                       "gaps": s.gaps, "lat": s.lat.tobytes(), "close": s.close_code,
                       "errors": s.kinds.get("error", 0)})
    await asyncio.gather(*(s.ws.close() for s in subs), return_exceptions=True)
    ctl.report("result", result)


async def writer_worker(index: int, conf: dict, ctl: h.Control) -> None:
    from notes.client import ClientState

    state = ClientState()
    sent_at: dict[str, int] = {}
    ack_rtt: list[int] = []
    messages = 0

    def send(msg):
        nonlocal messages
        if msg is not None:
            sent_at[msg["ref"]] = time.time_ns()
            messages += 1
            ws.send(json.dumps(msg))

    def on_message(payload: bytes, now: int) -> None:
        msg = json.loads(payload)
        kind = msg["type"]
        if kind == "hello":
            state.on_hello(msg)
        elif kind == "ack":
            t = sent_at.pop(msg.get("ref"), None)
            if t is not None:
                ack_rtt.append(now - t)
            send(state.on_ack(msg))
        elif kind == "edit":
            state.on_remote_edit(msg)
        elif kind in ("error", "resync"):
            raise RuntimeError(f"writer got {msg}")

    ws = await WsClient.connect(conf["port"], conf["path"], on_message)
    await ws.first
    ctl.report("ready", {"extensions": ws.extensions})
    await ctl.wait_go()
    rate, total = conf["rate"], conf["edits"]
    start = time.monotonic()
    for seq in range(total):
        delay = start + seq / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        send(state.insert(len(state.text), token(0, seq)))
    typed_s = time.monotonic() - start
    synced = await wait_until(lambda: state.awaiting is None and state.buffer is None, 60)
    ctl.report("result", {"rev": state.rev, "text": state.text, "typed": total,
                          "messages": messages, "synced": synced, "typed_s": typed_s,
                          "ack_rtt": ack_rtt})
    await ws.close()


def run_cell(server: h.Server, n: int, rate: float, seconds: float) -> dict:
    note_id = server.create_note("fanout", "")
    path = server.ws_path(note_id, "sub")
    procs = 1 if n <= 20 else 2 if n <= 200 else 3
    confs = [{"port": server.port, "path": path, "count": len(part), "drain": 30}
             for part in h.split(list(range(n)), procs)]
    subs = h.Workers(subscriber_worker, confs).start()
    ready = subs.collect("ready", 120)
    join_errors = sum(len(r["errors"]) for r in ready)
    writer = h.Workers(writer_worker, [{"port": server.port, "path": server.ws_path(note_id, "w"),
                                        "rate": rate, "edits": int(rate * seconds)}]).start()
    wready = writer.collect("ready", 60)[0]
    server_cpu = server.cpu()
    load_cpu = h.CpuMeter(subs.pids + writer.pids)
    machine = h.MachineMeter()
    writer.go.set()
    w = writer.collect("result", seconds + 120)[0]
    subs.shared.value = w["rev"]
    subs.stop.set()
    results = [r for part in subs.collect("result", 120) for r in part]
    cpu, lcpu, busy = server_cpu.read(), load_cpu.read(), machine.read()
    subs.join()
    writer.join()
    stored = server.get_note(note_id)
    expected = sha(w["text"])
    lat: list[int] = []
    from array import array
    for r in results:
        a = array("q")
        a.frombytes(r["lat"])
        lat.extend(a)
    received = sum(r["tokens"] for r in results)
    correct = sum(1 for r in results if r["sha"] == expected and r["rev"] == w["rev"])
    ok = (stored["content"] == w["text"] and correct == n and join_errors == 0 and w["synced"])
    return {
        "subscribers": n, "rate": rate, "seconds": seconds, "typed": w["typed"],
        "messages": w["messages"], "latency_ms": h.percentiles(lat),
        "ack_rtt_ms": h.percentiles(w["ack_rtt"]),
        "delivery": round(received / (w["typed"] * n), 5) if w["typed"] else None,
        "subscribers_correct": correct, "closed_early": sum(1 for r in results if r["close"]),
        "gaps": sum(r["gaps"] for r in results), "join_errors": join_errors,
        "server_cpu": cpu, "loadgen_cpu": lcpu, "machine_cores": busy,
        "others_cores": round(max(0.0, busy - cpu["cores"] - lcpu["cores"]), 2),
        "extensions": wready["extensions"] or "none",
        "text_ok": ok,
    }


def run(cluster: h.Cluster, quick: bool) -> dict:
    grid = ([(10, 20), (100, 20)] if quick else
            [(n, r) for n in (10, 100, 500) for r in (5, 20, 50)])
    if os.environ.get("BENCH_FANOUT"):  # other cells, e.g. BENCH_FANOUT=500x50,100x20
        grid = [tuple(int(v) for v in cell.split("x"))
                for cell in os.environ["BENCH_FANOUT"].split(",")]
    seconds = 3 if quick else 8
    db = cluster.fresh_database("fanout")
    server = h.Server(db, name="fanout").start()
    cells = []
    try:
        for n, rate in grid:
            cell = h.quiet_cell(run_cell, server, n, rate, seconds)
            cells.append(cell)
            lat = cell["latency_ms"]
            print(f"  fanout N={n:<4} {rate:>3}/s  p50 {h.fmt_ms(lat['p50'])} p99 "
                  f"{h.fmt_ms(lat['p99'])} max {h.fmt_ms(lat['max'])} ms  delivery "
                  f"{cell['delivery']}  server cpu {cell['server_cpu']['cores']}  others "
                  f"{cell['others_cores_attempts']}  "
                  f"ok={cell['text_ok']}", flush=True)
    finally:
        server.stop()
    target = next((c for c in cells if c["subscribers"] == 100 and c["rate"] == 20), None)
    big = next((c for c in cells if c["subscribers"] == 500 and c["rate"] == 50), None)
    return {
        "cells": cells,
        "target": {
            "what": "fan-out p99 < 50 ms with 100 subscribers at 20 edits/s (issue 5) and with "
                    "500 subscribers at 50 edits/s (issue 12)",
            "measured_ms": [c["latency_ms"]["p99"] if c else None for c in (target, big)],
            "met": None if big is None else all(
                c is not None and c["latency_ms"]["p99"] is not None
                and c["latency_ms"]["p99"] < 50 and c["delivery"] == 1.0 for c in (target, big)),
        },
        "ok": all(c["text_ok"] for c in cells),
    }


def rows(result: dict) -> list[list[str]]:
    out = []
    for c in result["cells"]:
        lat = c["latency_ms"]
        out.append([f"fanout N={c['subscribers']} @{c['rate']:g}/s",
                    f"p50 {h.fmt_ms(lat['p50'])} / p95 {h.fmt_ms(lat['p95'])} / p99 "
                    f"{h.fmt_ms(lat['p99'])} / max {h.fmt_ms(lat['max'])} ms",
                    f"delivery {c['delivery']:.4f}, server {c['server_cpu']['cores']} cores, "
                    f"others {c['others_cores']}",
                    "ok" if c["text_ok"] else "WRONG"])
    return out
