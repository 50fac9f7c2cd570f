"""9c. The trace replay across two instances: automerge-paper typed into instance A, read on B.

Two ``notes serve`` processes on one database (``NOTES_DURABILITY=log``). The writer of
``bench.scenarios.trace`` types the trace into A; one observer follows on A (the same-instance
reference, in the same run) and one on B. The observers store the edit frames during the run and
apply them after it (as in ``trace``). Modes, each on a fresh note:

- ``buffered``: the protocol's OT client (one edit awaiting its ack, keystrokes composed
  meanwhile): the whole trace. With ``log`` an ack waits for the group commit, so the buffer
  holds what was typed during a commit.
- ``pipelined``: one keystroke per edit, up to 128 in flight, one revision and one log entry
  per keystroke: a full run types the first 50,000 keystrokes, then (a fresh note) the whole
  trace; ``BENCH_TRACE2_PIPELINED=N,all`` sets the prefixes (``all``: the whole trace).

B numbers revisions its own way: every update A stores arrives on B as one notification and
becomes one revision there, in commit order, so B's k-th revision is A's k-th (checked: the
counts must match, else B's latency is not reported). Latency is the writer's send of a revision
to its arrival at the observer; throughput is keystrokes / (first send -> last revision at the
observer), and also per tenth of the revisions (does an observer slow down as the text grows?).

Check: both observers' texts, GET on A and on B, and (after every socket closed and the notes
were compacted) the stored row equal the trace's ``endContent`` (or the prefix's end text).
"""

from __future__ import annotations

import os
import time
import uuid
from array import array

from bench import harness as h
from bench.clients import Follower, load_trace, sha, wait_until
from bench.scenarios.trace import writer_worker

PIPELINED = "50000,all"  # the pipelined runs' prefixes (BENCH_TRACE2_PIPELINED overrides)


async def observer_worker(index: int, conf: dict, ctl: h.Control) -> None:
    obs = await Follower(record=False, defer=True).open(conf["port"], conf["path"])
    ctl.report("ready", {"rev": obs.rev})
    await ctl.wait_stop()
    expected = ctl.shared.value  # revisions the writer made on A

    last = [obs.edits, time.monotonic()]

    def settled() -> bool:  # every revision, or nothing new for 5 s
        if obs.edits != last[0]:
            last[:] = [obs.edits, time.monotonic()]
        return obs.edits >= expected or time.monotonic() - last[1] > 5 or not obs.open_now

    await wait_until(settled, conf["drain"], 0.01)
    arrivals = obs.arrivals()
    obs.finish()
    ctl.report("result", {"sha": sha(obs.text or ""), "rev": obs.rev,
                          "hello_rev": obs.hello_rev, "edits": obs.edits, "gaps": obs.gaps,
                          "close": obs.close_code, "arrivals": arrivals,
                          "length": len(obs.text or "")})
    await obs.ws.close()


def run_mode(a: h.Server, b: h.Server, cluster: h.Cluster, mode: str, limit: int | None,
             end: str) -> dict:
    note_id = a.create_note(f"trace across instances {mode}", "")
    observers = {name: h.Workers(observer_worker, [
        {"port": server.port, "path": server.ws_path(note_id, f"observer-{name}"),
         "drain": 600}]).start() for name, server in (("A", a), ("B", b))}
    for o in observers.values():
        o.collect("ready", 60)
    writer = h.Workers(writer_worker, [{"port": a.port, "mode": mode, "limit": limit,
                                        "window": 128 if mode == "pipelined" else 1,
                                        "path": a.ws_path(note_id, "writer")}]).start()
    writer.collect("ready", 60)
    health0 = {"A": a.health(), "B": b.health()}
    meters = h.CellMeters([a, b], cluster,
                          writer.pids + observers["A"].pids + observers["B"].pids)
    writer.go.set()
    w = writer.collect("result", 1800)[0]
    revisions = w["final_rev"] - w["rev0"]
    for o in observers.values():
        o.shared.value = revisions
        o.stop.set()
    got = {name: o.collect("result", 900)[0] for name, o in observers.items()}
    cpu = meters.read(["server_a_cpu", "server_b_cpu"])
    health = {"A": h.counts_since(health0["A"], a.health()),
              "B": h.counts_since(health0["B"], b.health())}
    live = {"A": a.get_note(note_id)["content"] == end,
            "B": b.get_note(note_id)["content"] == end}
    writer.join()
    for o in observers.values():
        o.join()
    acked = sorted(w["acked"])  # (rev on A, send ns, ack ns)
    send_of = {rev: s for rev, s, _ in acked}
    expected = sha(end)
    per: dict[str, dict] = {}
    for name, r in got.items():
        lat = array("q")
        mapped = name == "A" or r["edits"] == len(acked)
        for k, (rev, now) in enumerate(r["arrivals"]):
            if name == "A":
                s = send_of.get(rev)
            else:  # B's k-th revision after its hello is A's k-th
                s = acked[k][1] if mapped and k < len(acked) else None
            if s is not None:
                lat.append(now - s)
        last_ns = r["arrivals"][-1][1] if r["arrivals"] else w["t0"]
        wall = (last_ns - w["t0"]) / 1e9
        per[name] = {"edits": r["edits"], "revisions_match": r["edits"] == revisions,
                     "latency_ms": h.percentiles(lat) if mapped else None,
                     "wall_s": round(wall, 2),
                     "edits_per_s": round(w["keystrokes"] / wall) if wall > 0 else None,
                     "revisions_per_s_by_tenth": by_tenth(r["arrivals"], w["t0"]),
                     "text_ok": r["sha"] == expected and r["gaps"] == 0, "live_ok": live[name],
                     "gaps": r["gaps"], "close": r["close"]}
    commits, entries = health["A"]["log_commits"], health["A"]["log_entries"]
    return {
        "mode": mode, "note": note_id, "keystrokes": w["keystrokes"], "revisions": revisions,
        "writer_ack_ms": h.percentiles([ack - s for _, s, ack in acked]),
        "writer_wall_s": round((w["acked_ns"] - w["t0"]) / 1e9, 2),
        "same_instance": per["A"], "other_instance": per["B"],
        "log_commits": commits, "log_entries": entries,
        "group_commit_factor": round(entries / commits, 2) if commits else None,
        "catch_ups_b": health["B"]["catch_ups"], **cpu,
    }


def by_tenth(arrivals: list[tuple[int, int]], t0: int) -> list[int | None] | None:
    """Revisions per second at an observer over each tenth of its revisions (the first from the
    writer's first send)."""
    n = len(arrivals)
    if n < 10:
        return None
    bounds = [(n * k) // 10 for k in range(11)]
    marks = [t0] + [arrivals[b - 1][1] for b in bounds[1:]]
    return [round((bounds[k + 1] - bounds[k]) / ((marks[k + 1] - marks[k]) / 1e9))
            if marks[k + 1] > marks[k] else None for k in range(10)]


def run(cluster: h.Cluster, quick: bool) -> dict:
    prefixes = [None if p.strip() == "all" else int(p) for p in
                os.environ.get("BENCH_TRACE2_PIPELINED", PIPELINED).split(",")]
    modes = ([("buffered", 10_000), ("pipelined", 5_000)] if quick else
             [("buffered", None), *(("pipelined", p) for p in prefixes)])
    db = cluster.fresh_database("trace_instances")
    a, b = h.start_instances(db, "trace2", 2, {"NOTES_DURABILITY": "log",
                                                "NOTES_WS_RATE": "0"})  # (see trace.run)
    runs = []
    try:
        for mode, limit in modes:
            if h.QUIET["wait"] > 0:
                h.wait_quiet(h.QUIET["wait"], h.QUIET["threshold"])
            _, _, end = load_trace(limit)
            r = run_mode(a, b, cluster, mode, limit, end)
            r["end"] = end
            runs.append(r)
            sa, sb = r["same_instance"], r["other_instance"]
            print(f"  trace2 {mode:<9} {r['keystrokes']} keystrokes, {r['revisions']} revisions:"
                  f" on A {sa['edits_per_s']} edits/s p50 "
                  f"{h.fmt_ms((sa['latency_ms'] or {}).get('p50'))}; on B {sb['edits_per_s']} "
                  f"edits/s p50 {h.fmt_ms((sb['latency_ms'] or {}).get('p50'))} p99 "
                  f"{h.fmt_ms((sb['latency_ms'] or {}).get('p99'))} ms; factor "
                  f"{r['group_commit_factor']}; cpu A {r['server_a_cpu']['cores']} B "
                  f"{r['server_b_cpu']['cores']} pg {r['postgres_cpu']['cores']}; others "
                  f"{r['others_cores']}; ok A {sa['text_ok']} B {sb['text_ok']}", flush=True)
    finally:
        h.stop_all([a, b])  # every room compacts on the way out
    for r in runs:
        note = uuid.UUID(r["note"])
        rows_ = h.sql(db, "SELECT content FROM notes WHERE id = $1", note)
        r["stored_ok"] = bool(rows_) and rows_[0][0] == r.pop("end")
        # (both compacted on the way out: nothing of the note should be left in the log)
        r["log_rows_left"] = h.sql(db, "SELECT count(*) FROM note_updates WHERE note_id = $1",
                                   note)[0][0]
        r["ok"] = (r["stored_ok"] and all(r[k]["text_ok"] and r[k]["live_ok"]
                                          and r[k]["revisions_match"]
                                          for k in ("same_instance", "other_instance")))
    return {"runs": runs, "ok": all(r["ok"] for r in runs)}


def rows(result: dict) -> list[list[str]]:
    out = []
    for r in result["runs"]:
        sa, sb = r["same_instance"], r["other_instance"]
        lb = sb["latency_ms"] or {}
        out.append([f"trace2 {r['mode']} ({r['keystrokes']} keys)",
                    f"B {sb['edits_per_s']} edits/s, p50 {h.fmt_ms(lb.get('p50'))} / p99 "
                    f"{h.fmt_ms(lb.get('p99'))} ms; A {sa['edits_per_s']} edits/s",
                    f"{r['revisions']} revisions, factor {r['group_commit_factor']}, cpu A "
                    f"{r['server_a_cpu']['cores']} B {r['server_b_cpu']['cores']}",
                    "ok" if r["ok"] else "WRONG"])
    return out
