"""9b. Fan-out across two instances: one note, one writer on instance A, N subscribers split
over instances A and B (two ``notes serve`` processes on one database).

The writer and the subscribers are those of ``bench.scenarios.fanout`` (an OT writer typing one
token per tick; subscribers keeping the text and timing every token; here they wait for the
tokens typed, since B numbers revisions its own way). Half the subscribers join A, half B.
Nobody hears of an edit before it is stored: with ``log`` it reaches A's subscribers (and the
writer its ack) once A's group commit is done. The same commit carries it to B: the log row and
its NOTIFY commit together, PostgreSQL delivers the notification to B's listening connection, B
applies the Yjs update to its replica and sends the edit (in B's own revision numbers) to its
sockets. So the two latencies differ by the notification and B's work; both come from the same
cells, the same keystrokes.

Each cell runs with ``NOTES_DURABILITY=log`` (the default); one cell is repeated with
``debounce``, where the journal's commits carry only the NOTIFYs.

Check: every subscriber on either instance ends with the writer's text, without a gap in its
revisions; GET on A and on B return it.
"""

from __future__ import annotations

from array import array

from bench import harness as h
from bench.clients import sha
from bench.scenarios.fanout import subscriber_worker, writer_worker


def _group(results: list[dict], typed: int, n: int, expected: str) -> dict:
    lat = array("q")
    for r in results:
        lat.frombytes(r["lat"])
    received = sum(r["tokens"] for r in results)
    return {"subscribers": n, "latency_ms": h.percentiles(lat),
            "delivery": round(received / (typed * n), 5) if typed and n else None,
            "correct": sum(1 for r in results if r["sha"] == expected and r["gaps"] == 0),
            "closed_early": sum(1 for r in results if r["close"]),
            "errors": sum(r["errors"] for r in results)}


def run_cell(a: h.Server, b: h.Server, cluster: h.Cluster, n: int, rate: float,
             seconds: float) -> dict:
    note_id = a.create_note("fanout across instances", "")
    path = a.ws_path(note_id, "sub")
    half = n // 2
    groups = {}
    for name, server, count in (("A", a, n - half), ("B", b, half)):
        procs = 1 if count <= 50 else 2
        groups[name] = h.Workers(subscriber_worker, [
            {"port": server.port, "path": path, "count": len(part), "drain": 30, "tokens": True}
            for part in h.split(list(range(count)), procs)]).start()
    join_errors = 0
    for w in groups.values():
        join_errors += sum(len(r["errors"]) for r in w.collect("ready", 120))
    writer = h.Workers(writer_worker, [{"port": a.port, "path": a.ws_path(note_id, "w"),
                                        "rate": rate, "edits": int(rate * seconds)}]).start()
    writer.collect("ready", 60)
    health0 = {"A": a.health(), "B": b.health()}
    meters = h.CellMeters([a, b], cluster, writer.pids + groups["A"].pids + groups["B"].pids)
    writer.go.set()
    w = writer.collect("result", seconds + 120)[0]
    results = {}
    for g in groups.values():
        g.shared.value = w["typed"]
        g.stop.set()
    for name, g in groups.items():
        results[name] = [r for part in g.collect("result", 120) for r in part]
    cpu = meters.read(["server_a_cpu", "server_b_cpu"])
    health = {"A": h.counts_since(health0["A"], a.health()),
              "B": h.counts_since(health0["B"], b.health())}
    for g in groups.values():
        g.join()
    writer.join()
    expected = sha(w["text"])
    live = {"A": a.get_note(note_id)["content"], "B": b.get_note(note_id)["content"]}
    by = {name: _group(results[name], w["typed"], len(results[name]), expected)
          for name in ("A", "B")}
    ok = (w["synced"] and join_errors == 0 and live["A"] == w["text"] == live["B"]
          and all(g["correct"] == g["subscribers"] for g in by.values()))
    return {
        "subscribers": n, "rate": rate, "seconds": seconds, "typed": w["typed"],
        "messages": w["messages"], "writer_ack_ms": h.percentiles(w["ack_rtt"]),
        "same_instance": by["A"], "other_instance": by["B"],
        "log_commits_a": health["A"]["log_commits"], "log_entries_a": health["A"]["log_entries"],
        "catch_ups_b": health["B"]["catch_ups"],
        "durability": health0["A"]["durability"], "join_errors": join_errors,
        **cpu, "text_ok": ok,
    }


def grid(quick: bool) -> list[tuple[str, int, float]]:
    if quick:
        return [("log", 10, 20), ("log", 100, 20), ("debounce", 100, 20)]
    return [("log", 10, 20), ("log", 100, 20), ("log", 100, 50), ("log", 500, 20),
            ("debounce", 100, 20)]


def run(cluster: h.Cluster, quick: bool) -> dict:
    seconds = 3 if quick else 8
    cells = []
    for mode in ("log", "debounce"):
        todo = [(n, r) for m, n, r in grid(quick) if m == mode]
        db = cluster.fresh_database(f"fanout_instances_{mode}")
        a, b = h.start_instances(db, f"fanout2-{mode}", 2, {"NOTES_DURABILITY": mode})
        try:
            for n, rate in todo:
                c = h.quiet_cell(run_cell, a, b, cluster, n, rate, seconds)
                c["mode"] = mode
                cells.append(c)
                sa, sb = c["same_instance"]["latency_ms"], c["other_instance"]["latency_ms"]
                print(f"  fanout2 {mode:<8} N={n:<4} {rate:>3}/s  same p50 {h.fmt_ms(sa['p50'])} "
                      f"p99 {h.fmt_ms(sa['p99'])}  other p50 {h.fmt_ms(sb['p50'])} p99 "
                      f"{h.fmt_ms(sb['p99'])} ms  writer ack p50 "
                      f"{h.fmt_ms(c['writer_ack_ms']['p50'])}  cpu A {c['server_a_cpu']['cores']}"
                      f" B {c['server_b_cpu']['cores']} pg {c['postgres_cpu']['cores']}  others "
                      f"{c['others_cores_attempts']}  ok={c['text_ok']}", flush=True)
        finally:
            h.stop_all([a, b])
    return {"cells": cells, "ok": all(c["text_ok"] for c in cells)}


def rows(result: dict) -> list[list[str]]:
    out = []
    for c in result["cells"]:
        sa, sb = c["same_instance"]["latency_ms"], c["other_instance"]["latency_ms"]
        out.append([f"fanout2 {c['mode']} N={c['subscribers']} @{c['rate']:g}/s",
                    f"same p50 {h.fmt_ms(sa['p50'])} / p99 {h.fmt_ms(sa['p99'])}; other p50 "
                    f"{h.fmt_ms(sb['p50'])} / p99 {h.fmt_ms(sb['p99'])} ms",
                    f"delivery {c['same_instance']['delivery']} / "
                    f"{c['other_instance']['delivery']}, cpu A {c['server_a_cpu']['cores']} B "
                    f"{c['server_b_cpu']['cores']}",
                    "ok" if c["text_ok"] else "WRONG"])
    return out
