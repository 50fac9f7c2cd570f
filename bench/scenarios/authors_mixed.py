"""12a. The authors sweep with half the authors on Yjs (``authors_mixed``).

The sweep of ``bench.scenarios.authors`` (A authors on one note, 5 keystrokes/s each, tokens
``[author.seq.time_ns]``), with the odd-numbered authors speaking the y-websocket protocol on
``/yjs/{note_id}`` (:class:`bench.yauthors.YAuthor`: one string item per keystroke, written by
hand, typed at one spot) and the even ones the JSON protocol on ``/notes/{id}/live`` (the sweep's
OT authors, typing at random places). JSON authors receive the Yjs authors' inserts as ``edit``
messages, Yjs authors the JSON authors' edits as Yjs updates. Each receiver times every token
from the others; the latency is split by receiver and sender protocol.

A Yjs update has no acknowledgement, so the end of a step is when every author has received
every token of the others (or ``drain`` s passed) and the server's text is as long as all the
tokens typed. Check: the text (GET) holds every token typed exactly once, a JSON observer's text
and a fresh Yjs peer's ``content`` (decoded by pycrdt) equal it.

:func:`run_step` also serves ``authors_workers`` (all JSON, ``notes serve --workers 2``).
"""

from __future__ import annotations

import asyncio
import os
import time
from array import array
from collections import Counter

from bench import harness as h
from bench.clients import TOKEN, Follower, open_many, sha, wait_until
from bench.scenarios.authors import EDIT_PREFIX, Author, each_token_once, past_cliff, type_steadily
from bench.yauthors import YAuthor
from bench.ywire import Wire, fetch_text

STEPS = [50, 100, 150, 200]
QUICK_STEPS = [10, 50]
#: latency arrays: receiver protocol x sender protocol (j = JSON, y = Yjs; receivers and senders
#: are told apart by their id, odd = Yjs, so with no Yjs author "jy" holds the odd JSON authors')
GROUPS = ("jj", "jy", "yj", "yy")


class MixedAuthor(Author):
    """A JSON author (``bench.scenarios.authors.Author``, same fast path) that files each
    received token by its sender's protocol: ``lat`` from JSON (even ids), ``lat_y`` from Yjs
    (odd ids)."""

    def __init__(self, aid: int, seed: int):
        super().__init__(aid, seed)
        self.lat_y = array("q")
        self.slow_frames = 0  # edit frames that did not fit the fast path

    def on_message(self, payload: bytes, now: int) -> None:
        if payload.startswith(EDIT_PREFIX):
            comma = payload.find(b",", 21)
            start = payload.find(b'"insert":"', comma) + 10
            end = payload.find(b'"', start)
            if start >= 10 and end > 0 and payload.find(b'"delete"', comma) < 0:
                self.rev = int(payload[21:comma])
                inserted = payload[start:end]
                self.length += end - start
                if inserted.count(b"[") == 1:
                    sender = int(inserted[1:inserted.index(b".")])
                    (self.lat_y if sender & 1 else self.lat).append(
                        now - int(inserted[inserted.rindex(b".") + 1:-1]))
                else:
                    self.received(inserted, now)
                return
            self.slow_frames += 1
        super().on_message(payload, now)

    def received(self, payload: bytes, now: int) -> None:
        for m in TOKEN.finditer(payload):
            (self.lat_y if int(m.group(1)) & 1 else self.lat).append(now - int(m.group(3)))

    @property
    def tokens_in(self) -> int:
        return len(self.lat) + len(self.lat_y)


def _pool(authors: list, prefix: str) -> dict:
    """Latency samples of one kind of receiver (``prefix`` j or y) as bytes, by sender."""
    out = {}
    for suffix, attribute in (("j", "lat"), ("y", "lat_y")):
        values = array("q")
        for a in authors:
            values.extend(getattr(a, attribute))
        out[prefix + suffix] = values.tobytes()
    return out


async def author_worker(index: int, conf: dict, ctl: h.Control) -> None:
    port, rate, ids = conf["port"], conf["rate"], conf["ids"]
    yjs = conf["yjs"]

    def opener(i: int):
        aid = ids[i]
        if yjs and aid & 1:
            return YAuthor(aid, aid * 7919 + 1, f"{conf['ypath']}&a={aid}").open(port)
        return MixedAuthor(aid, aid * 7919 + 1).open(port, f"{conf['path']}&a={aid}")

    authors, errors = await open_many(len(ids), opener, 32)
    authors = [a for a in authors if a is not None]
    ctl.report("ready", {"joined": len(authors), "errors": errors})
    await ctl.wait_go()
    await type_steadily(authors, rate, time.monotonic(), conf["seconds"], conf["drain"])
    ctl.report("typed", {"typed": {a.aid: a.seq for a in authors}})
    total = await ctl.command()  # keystrokes typed by all
    # Done when every author has every token of the others (Yjs has no ack to wait for).
    await wait_until(lambda: all(a.tokens_in >= total - a.seq or not a.ws.is_open
                                 for a in authors), conf["drain"])
    json_authors = [a for a in authors if isinstance(a, MixedAuthor)]
    y_authors = [a for a in authors if isinstance(a, YAuthor)]
    rtt = array("q")
    for a in json_authors:
        rtt.extend(a.ack_rtt)
    errors_: Counter = Counter()
    for a in authors:
        errors_.update(a.errors)
    result = {**_pool(json_authors, "j"), **_pool(y_authors, "y"), "rtt": rtt.tobytes(),
              "errors": dict(errors_),
              "closed": [a.ws.close_code for a in authors if not a.ws.is_open],
              "behind": sum(1 for a in authors if a.tokens_in < total - a.seq),
              "slow_frames": sum(a.slow_frames for a in json_authors),
              "y_errors": [a.error for a in y_authors if a.error],
              "y_bytes_out": sum(a.bytes_out for a in y_authors)}
    await asyncio.gather(*(a.ws.close() for a in authors), return_exceptions=True)
    ctl.report("result", result)


async def observer_worker(index: int, conf: dict, ctl: h.Control) -> None:
    obs = await Follower(record=False).open(conf["port"], conf["path"])
    ctl.report("ready", {"joined": 1, "errors": []})
    length = await ctl.command()  # of the final text
    await wait_until(lambda: len(obs.text) >= length or not obs.open_now, conf["drain"])
    ctl.report("result", {"text": obs.text, "rev": obs.rev, "gaps": obs.gaps,
                          "close": obs.close_code})
    await obs.ws.close()


def typed_chars(typed: dict[int, int]) -> int:
    """The length of all tokens typed (``[A.S.T]``, T of 19 digits)."""
    return sum(n * (len(str(a)) + 23) + sum(len(str(s)) for s in range(n))
               for a, n in typed.items())


def final_text(server: h.Server, note_id: str, length: int, agree: int,
               timeout: float = 30.0) -> tuple[dict, bool]:
    """GET the note until it is ``length`` code points long, ``agree`` times in a row with the
    same content (several answers, so that with ``--workers`` every worker likely answered);
    (the last note, whether it got there)."""
    deadline = time.monotonic() + timeout
    same = 0
    last = None
    while time.monotonic() < deadline:
        note = server.get_note(note_id)
        if len(note["content"]) == length and (last is None or note["content"] == last["content"]):
            same += 1
            if same >= agree:
                return note, True
        else:
            same = 0
        last = note
        time.sleep(0.02)
    return last, False


def run_step(server: h.Server, cluster: h.Cluster, count: int, seconds: float, rate: float,
             yjs: bool, processes: int = 1) -> dict:
    """One step: ``count`` authors (odd ones on Yjs if ``yjs``) on a fresh note of ``server``
    (``processes``: how many serve its port, each asked for its /health counters)."""
    note_id = server.create_note("authors", "")
    path, ypath = server.ws_path(note_id, "author"), f"/yjs/{note_id}?name=author"
    ids = list(range(1, count + 1))
    half = (count + 1) // 2
    parts = [ids] if count <= 20 else [ids[:half], ids[half:]]  # both kinds in each process
    confs = [{"port": server.port, "path": path, "ypath": ypath, "ids": part, "rate": rate,
              "seconds": seconds, "drain": 30, "yjs": yjs} for part in parts]
    authors = h.Workers(author_worker, confs).start()
    observer = h.Workers(observer_worker, [{"port": server.port, "path": path, "drain": 30}])
    observer.start()
    ready = authors.collect("ready", 120) + observer.collect("ready", 60)
    join_errors = sum(len(r["errors"]) for r in ready)
    before = h.health_each(server, processes)
    server_cpu, pg_cpu = h.TreeCpuMeter(server.pid), cluster.cpu()
    load_cpu = h.CpuMeter(authors.pids + observer.pids)
    machine = h.MachineMeter()
    authors.go.set()
    observer.go.set()
    typed: dict[int, int] = {}
    for part in authors.collect("typed", seconds + 120):
        typed.update({int(k): v for k, v in part["typed"].items()})
    total = sum(typed.values())
    length = typed_chars(typed)
    # The last Yjs updates have no ack: wait until the server has every token.
    final, complete = final_text(server, note_id, length, 6 if processes > 1 else 1)
    cpu, pcpu, lcpu, busy = server_cpu.read(), pg_cpu.read(), load_cpu.read(), machine.read()
    after = h.health_each(server, processes)
    counts = h.summed_counts(before, after)
    authors.send(total)
    observer.send(len(final["content"]))
    results = authors.collect("result", 120)
    obs = observer.collect("result", 60)[0]
    authors.join()
    observer.join()
    lat: dict[str, array] = {g: array("q") for g in GROUPS}
    rtt = array("q")
    errors: Counter = Counter()
    closed: list = []
    for r in results:
        for g in GROUPS:
            lat[g].frombytes(r[g])
        rtt.frombytes(r["rtt"])
        errors.update(r["errors"])
        closed.extend(r["closed"])
    every = array("q")
    for g in GROUPS:
        every.extend(lat[g])
    text = final["content"]
    yjs_text = asyncio.run(fetch_text(server.port, Wire(f"/yjs/{note_id}?name=check"))) \
        if yjs else None
    text_ok = (complete and each_token_once(text, typed) and obs["text"] == text
               and obs["gaps"] == 0 and (yjs_text is None or yjs_text == text))
    possible = total * (count - 1)  # each token reaches the other authors
    frames, writes = counts.get("frames_sent", 0), counts.get("socket_writes", 0)
    edits, commits = counts.get("log_entries", 0), counts.get("log_commits", 0)
    json_ids = [a for a in typed if not (yjs and a & 1)]
    return {
        "authors": count, "yjs_authors": count - len(json_ids) if yjs else 0,
        "server_processes": processes, "rate": rate, "seconds": seconds, "typed": total,
        "typed_json": sum(typed[a] for a in json_ids), "revisions": final["rev"],
        "latency_ms": h.percentiles(every),
        **{f"latency_{g}_ms": h.percentiles(lat[g]) for g in GROUPS},
        "json_receivers_ms": h.percentiles(list(lat["jj"]) + list(lat["jy"])),
        "yjs_receivers_ms": h.percentiles(list(lat["yj"]) + list(lat["yy"])),
        # by the sender's protocol (with no Yjs author, "y" groups are the odd JSON authors')
        "json_senders_ms": h.percentiles(list(lat["jj"]) + list(lat["yj"])) if yjs
        else h.percentiles(every),
        "yjs_senders_ms": h.percentiles(list(lat["jy"]) + list(lat["yy"]) if yjs else []),
        "ack_rtt_ms": h.percentiles(rtt),
        "delivery": round(len(every) / possible, 5) if possible else None,
        "errors": dict(errors), "closed": len(closed), "close_codes": sorted(set(closed)),
        "join_errors": join_errors, "behind": sum(r["behind"] for r in results),
        "slow_edit_frames": sum(r["slow_frames"] for r in results),
        "y_errors": [e for r in results for e in r["y_errors"]][:5],
        "y_bytes_out": sum(r["y_bytes_out"] for r in results),
        "server_cpu": cpu, "postgres_cpu": pcpu, "loadgen_cpu": lcpu, "machine_cores": busy,
        "others_cores": round(max(0.0, busy - cpu["cores"] - pcpu["cores"] - lcpu["cores"]), 2),
        # /health of each server process (summed; ``health_processes`` of them answered)
        "health_processes": counts["processes"],
        "per_process": [{k: h.counts_since(before[pid], after[pid]).get(k) for k in
                         ("frames_sent", "socket_writes", "log_entries", "log_commits")}
                        for pid in sorted(after) if pid in before],
        "frames_sent": frames, "socket_writes": writes,
        "log_commits": commits, "log_entries": edits,
        "edits_per_commit": round(edits / commits, 2) if commits else None,
        "frames_per_write": round(frames / writes, 2) if writes else None,
        "server_us_per_frame": round(cpu["cpu_s"] * 1e6 / frames, 2) if frames else None,
        "server_us_per_edit": round(cpu["cpu_s"] * 1e6 / edits, 1) if edits else None,
        "text_ok": text_ok, "text_complete": complete,
        "yjs_text_ok": None if yjs_text is None else yjs_text == text,
        "text_sha": sha(text), "text_len": len(text),
    }


def steps() -> list[int]:
    if os.environ.get("BENCH_AUTHORS"):  # other steps, e.g. BENCH_AUTHORS=150,200,300
        return [int(n) for n in os.environ["BENCH_AUTHORS"].split(",")]
    return STEPS


def sweep(server: h.Server, cluster: h.Cluster, quick: bool, label: str, yjs: bool,
          processes: int) -> dict:
    """Every step (``steps()``, or QUICK_STEPS), on ``server`` (stopped at the end); the first
    step past the sweep's cliff rule is marked, the steps after it still run."""
    counts = QUICK_STEPS if quick and not os.environ.get("BENCH_AUTHORS") else steps()
    seconds = 3 if quick else 8
    results, cliff = [], None
    try:
        for count in counts:
            step = h.quiet_cell(run_step, server, cluster, count, seconds, 5.0, yjs, processes)
            results.append(step)
            print(line(label, step), flush=True)
            if past_cliff(step) and cliff is None:
                cliff = count
    finally:
        server.stop()
    return {"steps": results, "cliff": cliff,
            "cliff_rule": "first step with p95 > 2 s, an error, a closed socket or a lost token",
            "ok": all(s["text_ok"] for s in results)}


def line(label: str, s: dict) -> str:
    lat, j, y = s["latency_ms"], s["json_receivers_ms"], s["yjs_receivers_ms"]
    return (f"  {label} A={s['authors']:<4} p50 {h.fmt_ms(lat['p50'])} p95 {h.fmt_ms(lat['p95'])}"
            f" p99 {h.fmt_ms(lat['p99'])} ms (JSON receivers p50/p99 {h.fmt_ms(j['p50'])}/"
            f"{h.fmt_ms(j['p99'])}, Yjs {h.fmt_ms(y['p50'])}/{h.fmt_ms(y['p99'])})  ack p50 "
            f"{h.fmt_ms(s['ack_rtt_ms']['p50'])}  server cpu {s['server_cpu']['cores']} pg "
            f"{s['postgres_cpu']['cores']} loadgen {s['loadgen_cpu']['cores']} machine "
            f"{s['machine_cores']} others {s['others_cores_attempts']}  revisions "
            f"{s['revisions']}  delivery {s['delivery']}  behind {s['behind']}  frames/write "
            f"{s['frames_per_write']} (health of {s['health_processes']})  slow frames "
            f"{s['slow_edit_frames']}  errors {s['errors']} closed {s['closed']}  "
            f"ok={s['text_ok']}")


def run(cluster: h.Cluster, quick: bool) -> dict:
    db = cluster.fresh_database("authors_mixed")
    server = h.Server(db, name="authors-mixed").start()
    return sweep(server, cluster, quick, "authors_mixed", yjs=True, processes=1)


def rows(result: dict, label: str = "authors mixed") -> list[list[str]]:
    out = []
    for s in result["steps"]:
        lat, j, y = s["latency_ms"], s["json_receivers_ms"], s["yjs_receivers_ms"]
        mark = " <- cliff" if s["authors"] == result["cliff"] else ""
        split = (f"; JSON recv p50 {h.fmt_ms(j['p50'])} / Yjs recv p50 {h.fmt_ms(y['p50'])}"
                 if y["n"] else "")
        out.append([f"{label} A={s['authors']} x5/s{mark}",
                    f"p50 {h.fmt_ms(lat['p50'])} / p95 {h.fmt_ms(lat['p95'])} / p99 "
                    f"{h.fmt_ms(lat['p99'])} / max {h.fmt_ms(lat['max'])} ms{split}",
                    f"server {s['server_cpu']['cores']} cores, pg {s['postgres_cpu']['cores']}, "
                    f"loadgen {s['loadgen_cpu']['cores']}, others {s['others_cores']}, "
                    f"delivery {s['delivery']}, closed {s['closed']}",
                    "ok" if s["text_ok"] else "WRONG"])
    return out


__all__ = ["MixedAuthor", "run", "run_step", "rows", "sweep"]
