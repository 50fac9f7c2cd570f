"""2. Authors sweep: A authors on one note, each typing 5 edits/s at random places.

An author is a minimal but correct OT client: it keeps only the revision and the length of the
server text, and never has more than one edit awaiting its ack. A keystroke made while one awaits
waits in a buffer and goes out, with the others made meanwhile, as one insert at a random place
when the ack arrives (like a person typing at one spot). Because it sends only on the revision it
has, with positions inside that revision's text, the server's transform does the rest.

Every author times every token it receives from the others. One extra observer keeps the full
text; at the end the text must hold every token typed exactly once and equal the server's.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from array import array
from collections import Counter

from bench import harness as h
from bench.clients import TOKEN, TOKEN_STR, Follower, open_many, sha, wait_until
from bench.wsclient import WsClient
from notes.collab.delta import length_change

EDIT_PREFIX = b'{"type":"edit","rev":'  # (21 bytes)


class Author:
    def __init__(self, aid: int, seed: int):
        self.aid = aid
        self.rng = random.Random(seed)
        self.rev = 0
        self.length = 0
        self.seq = 0
        self.pending: list[str] = []
        self.awaiting: str | None = None
        self.sent_ns = 0
        self.lat = array("q")
        self.ack_rtt = array("q")
        self.errors = Counter()
        self.ws: WsClient | None = None
        self.ref = 0

    async def open(self, port: int, path: str) -> Author:
        self.ws = await WsClient.connect(port, path, self.on_message)
        await asyncio.wait_for(asyncio.shield(self.ws.first), 60)
        return self

    def on_message(self, payload: bytes, now: int) -> None:
        if payload.startswith(EDIT_PREFIX):
            # Most frames are another author's insert, read without parsing the JSON: the
            # server writes it compactly, `rev` first, and authors insert whole tokens only.
            comma = payload.find(b",", 21)
            start = payload.find(b'"insert":"', comma) + 10
            end = payload.find(b'"', start)
            if start >= 10 and end > 0 and payload.find(b'"delete"', comma) < 0:
                self.rev = int(payload[21:comma])
                inserted = payload[start:end]
                self.length += end - start
                if inserted.count(b"[") == 1:
                    self.lat.append(now - int(inserted[inserted.rindex(b".") + 1:-1]))
                else:
                    self.received(inserted, now)
                return
        msg = json.loads(payload)
        kind = msg["type"]
        if kind == "edit":
            self.rev = msg["rev"]
            self.length += length_change(msg["delta"])
            self.received(payload, now)
        elif kind == "ack":
            self.rev = msg["rev"]
            self.length += len(self.awaiting)
            self.awaiting = None
            self.ack_rtt.append(now - self.sent_ns)
            if self.pending:
                self.flush()
        elif kind == "hello":
            self.rev, self.length = msg["rev"], len(msg["content"])
        elif kind == "resync":
            self.errors["resync"] += 1
            self.rev, self.length = msg["rev"], len(msg["content"])
            self.pending.insert(0, self.awaiting)  # not applied: send it again
            self.awaiting = None
            self.flush()
        elif kind == "error":
            self.errors[msg.get("code", "error")] += 1

    def received(self, payload: bytes, now: int) -> None:
        """Time the tokens of an edit frame from the others."""
        for m in TOKEN.finditer(payload):
            self.lat.append(now - int(m.group(3)))

    def keystroke(self) -> None:
        self.pending.append(f"[{self.aid}.{self.seq}.{time.time_ns()}]")
        self.seq += 1
        if self.awaiting is None:
            self.flush()

    def flush(self) -> None:
        if not self.ws.is_open:
            return
        text = "".join(self.pending)
        self.pending = []
        pos = self.rng.randint(0, self.length)
        delta = [{"retain": pos}, {"insert": text}] if pos else [{"insert": text}]
        self.ref += 1
        self.awaiting = text
        self.sent_ns = time.time_ns()
        self.ws.send(json.dumps({"type": "edit", "rev": self.rev, "delta": delta,
                                 "ref": f"{self.aid}:{self.ref}"}))

    @property
    def idle(self) -> bool:
        return self.awaiting is None and not self.pending


async def type_steadily(authors: list[Author], rate: float, start: float, seconds: float,
                        drain: float) -> None:
    """Each author types ``rate`` keystrokes/s from ``start`` (``time.monotonic``) for
    ``seconds``, its first at a random point of the first interval; then wait (up to ``drain``
    s) until every author's keystrokes are acknowledged."""
    end = start + seconds

    async def type_(author: Author) -> None:
        t = start + author.rng.random() / rate
        while t < end:
            await asyncio.sleep(max(0.0, t - time.monotonic()))
            if author.ws.is_open:
                author.keystroke()
            t += 1 / rate

    await asyncio.gather(*(type_(a) for a in authors))
    await drained(authors, drain)


async def drained(authors: list[Author], timeout: float) -> bool:
    """Wait until no author has an edit awaiting its ack or keystrokes buffered."""
    return await wait_until(lambda: all(a.idle or not a.ws.is_open for a in authors), timeout)


def pooled(authors: list[Author], **samples: str) -> dict:
    """What a load process reports of its authors: for each ``key=attribute``, every author's
    samples in one array (as bytes), their errors summed, the close codes of closed sockets."""
    out: dict = {}
    for key, attribute in samples.items():
        values = array("q")
        for a in authors:
            values.extend(getattr(a, attribute))
        out[key] = values.tobytes()
    errors: Counter = Counter()
    for a in authors:
        errors.update(a.errors)
    out["errors"] = dict(errors)
    out["closed"] = [a.ws.close_code for a in authors if not a.ws.is_open]
    return out


def merged(parts: list[dict], *keys: str) -> dict:
    """The :func:`pooled` reports of the load processes in one: each key's samples in one
    array, ``errors`` (a Counter) and ``closed`` (the close codes)."""
    out: dict = {key: array("q") for key in keys}
    errors: Counter = Counter()
    closed: list = []
    for part in parts:
        for key in keys:
            out[key].frombytes(part[key])
        errors.update(part["errors"])
        closed.extend(part["closed"])
    out["errors"], out["closed"] = errors, closed
    return out


async def author_worker(index: int, conf: dict, ctl: h.Control) -> None:
    port, path, rate = conf["port"], conf["path"], conf["rate"]
    ids = conf["ids"]
    authors, errors = await open_many(
        len(ids), lambda i: Author(ids[i], ids[i] * 7919 + 1).open(port, f"{path}&a={ids[i]}"), 32)
    authors = [a for a in authors if a is not None]
    ctl.report("ready", {"joined": len(authors), "errors": errors})
    await ctl.wait_go()
    await type_steadily(authors, rate, time.monotonic(), conf["seconds"], conf["drain"])
    ctl.report("typed", {"typed": {a.aid: a.seq for a in authors}})
    await ctl.wait_stop()
    final = ctl.shared.value
    await wait_until(lambda: all(a.rev >= final or not a.ws.is_open for a in authors),
                     conf["drain"])
    result = {**pooled(authors, lat="lat", rtt="ack_rtt"),
              "behind": sum(1 for a in authors if a.rev < final),
              "received": sum(len(a.lat) for a in authors)}
    await asyncio.gather(*(a.ws.close() for a in authors), return_exceptions=True)
    ctl.report("result", result)


async def observer_worker(index: int, conf: dict, ctl: h.Control) -> None:
    obs = await Follower(record=False).open(conf["port"], conf["path"])
    ctl.report("ready", {"joined": 1, "errors": []})
    await ctl.wait_go()
    ctl.report("typed", {"typed": {}})
    await ctl.wait_stop()
    final = ctl.shared.value
    await wait_until(lambda: obs.rev >= final or not obs.open_now, conf["drain"])
    ctl.report("result", {"text": obs.text, "rev": obs.rev, "gaps": obs.gaps,
                          "close": obs.close_code})
    await obs.ws.close()


def each_token_once(text: str, typed: dict[int, int]) -> bool:
    """Does ``text`` hold every token typed (``typed``: keystrokes per author) exactly once, and
    nothing else?"""
    found, rest = peel_tokens(text)
    return found == Counter((a, s) for a, n in typed.items() for s in range(n)) and rest == ""


def past_cliff(step: dict) -> bool:
    """The sweep's cliff rule: p95 > 2 s, an error, a closed socket or a lost token."""
    lat = step["latency_ms"]
    return bool(lat["p95"] is None or lat["p95"] > 2000 or step["errors"] or step["closed"]
                or step["join_errors"] or step["behind"] or not step["text_ok"]
                or (step["delivery"] or 0) < 1.0)


def peel_tokens(text: str) -> tuple[Counter, str]:
    """The tokens in ``text`` and what is left. An insert may land inside an earlier token, so
    whole tokens are removed innermost first until none is left."""
    found: Counter = Counter()
    while True:
        parts = TOKEN_STR.split(text)
        if len(parts) == 1:
            return found, text
        for i in range(1, len(parts), 4):
            found[(int(parts[i]), int(parts[i + 1]))] += 1
        text = "".join(parts[0::4])


def run_step(server: h.Server, count: int, seconds: float, rate: float) -> dict:
    note_id = server.create_note("authors", "")
    path = server.ws_path(note_id, "author")
    procs = 1 if count <= 20 else 2
    confs = [{"port": server.port, "path": path, "ids": part, "rate": rate, "seconds": seconds,
              "drain": 30} for part in h.split(list(range(1, count + 1)), procs)]
    authors = h.Workers(author_worker, confs).start()
    observer = h.Workers(observer_worker, [{"port": server.port, "path": path, "drain": 30}])
    observer.start()
    ready = authors.collect("ready", 120) + observer.collect("ready", 60)
    join_errors = sum(len(r["errors"]) for r in ready)
    before = server.health()
    server_cpu, load_cpu = server.cpu(), h.CpuMeter(authors.pids + observer.pids)
    machine = h.MachineMeter()
    authors.go.set()
    observer.go.set()
    typed: dict[int, int] = {}
    for part in authors.collect("typed", seconds + 120):
        typed.update({int(k): v for k, v in part["typed"].items()})
    observer.collect("typed", 10)
    cpu, lcpu, busy = server_cpu.read(), load_cpu.read(), machine.read()
    after = server.health()
    frames = after.get("frames_sent", 0) - before.get("frames_sent", 0)
    writes = after.get("socket_writes", 0) - before.get("socket_writes", 0)
    edits = after.get("log_entries", 0) - before.get("log_entries", 0)
    commits = after.get("log_commits", 0) - before.get("log_commits", 0)
    final = server.get_note(note_id)
    for w in (authors, observer):
        w.shared.value = final["rev"]
        w.stop.set()
    results = authors.collect("result", 120)
    obs = observer.collect("result", 60)[0]
    authors.join()
    observer.join()
    pool = merged(results, "lat", "rtt")
    lat, rtt, errors, closed = pool["lat"], pool["rtt"], pool["errors"], pool["closed"]
    total = sum(typed.values())
    # Every token typed must be in the final text exactly once.
    text_ok = (each_token_once(final["content"], typed) and obs["text"] == final["content"]
               and obs["gaps"] == 0)
    possible = total * (count - 1)  # each token reaches the other authors
    return {
        "authors": count, "rate": rate, "seconds": seconds, "typed": total,
        "revisions": final["rev"], "latency_ms": h.percentiles(lat),
        "ack_rtt_ms": h.percentiles(rtt),
        "delivery": round(len(lat) / possible, 5) if possible else None,
        "errors": dict(errors), "closed": len(closed), "close_codes": sorted(set(closed)),
        "join_errors": join_errors, "behind": sum(r["behind"] for r in results),
        "server_cpu": cpu, "loadgen_cpu": lcpu, "machine_cores": busy,
        # What a delivered frame and an edit cost the server (its CPU over the typing, shared
        # by both), and how many frames a socket write carried.
        "frames_sent": frames, "socket_writes": writes, "log_commits": commits,
        "edits_per_commit": round(edits / commits, 2) if commits else None,
        "frames_per_write": round(frames / writes, 2) if writes else None,
        "server_us_per_frame": round(cpu["cpu_s"] * 1e6 / frames, 2) if frames else None,
        "server_us_per_edit": round(cpu["cpu_s"] * 1e6 / edits, 1) if edits else None,
        "loadgen_us_per_frame": round(lcpu["cpu_s"] * 1e6 / frames, 2) if frames else None,
        "others_cores": round(max(0.0, busy - cpu["cores"] - lcpu["cores"]), 2),
        "text_ok": text_ok, "text_sha": sha(final["content"]), "text_len": len(final["content"]),
    }


def run(cluster: h.Cluster, quick: bool) -> dict:
    steps = [50, 200] if quick else [10, 25, 50, 75, 100, 150, 200, 300]
    if os.environ.get("BENCH_AUTHORS"):  # other steps, e.g. BENCH_AUTHORS=150,200,300
        steps = [int(n) for n in os.environ["BENCH_AUTHORS"].split(",")]
    seconds = 3 if quick else 8
    db = cluster.fresh_database("authors")
    server = h.Server(db, name="authors").start()
    results = []
    cliff = None
    try:
        for count in steps:
            step = h.quiet_cell(run_step, server, count, seconds, 5.0)
            results.append(step)
            lat = step["latency_ms"]
            print(f"  authors A={count:<4} p50 {h.fmt_ms(lat['p50'])} p95 {h.fmt_ms(lat['p95'])}"
                  f" p99 {h.fmt_ms(lat['p99'])} ms  server cpu {step['server_cpu']['cores']}  "
                  f"loadgen {step['loadgen_cpu']['cores']}  others "
                  f"{step['others_cores_attempts']}  frames/write {step['frames_per_write']}  "
                  f"edits/commit {step['edits_per_commit']}  ack p50 {step['ack_rtt_ms']['p50']}  "
                  f"server us/frame {step['server_us_per_frame']}  "
                  f"loadgen us/frame {step['loadgen_us_per_frame']}  "
                  f"errors {step['errors']} closed "
                  f"{step['closed']}  ok={step['text_ok']}", flush=True)
            if past_cliff(step) and cliff is None:
                cliff = count
                break
    finally:
        server.stop()
    return {
        "steps": results, "cliff": cliff,
        "cliff_rule": "first step with p95 > 2 s, an error, a closed socket or a lost token",
        "ok": all(s["text_ok"] for s in results),
    }


def rows(result: dict) -> list[list[str]]:
    out = []
    for s in result["steps"]:
        lat = s["latency_ms"]
        mark = " <- cliff" if s["authors"] == result["cliff"] else ""
        out.append([f"authors A={s['authors']} x5/s{mark}",
                    f"p50 {h.fmt_ms(lat['p50'])} / p95 {h.fmt_ms(lat['p95'])} / p99 "
                    f"{h.fmt_ms(lat['p99'])} / max {h.fmt_ms(lat['max'])} ms",
                    f"server {s['server_cpu']['cores']} cores, loadgen "
                    f"{s['loadgen_cpu']['cores']}, others {s['others_cores']}, "
                    f"delivery {s['delivery']}, "
                    f"closed {s['closed']}",
                    "ok" if s["text_ok"] else "WRONG"])
    return out
