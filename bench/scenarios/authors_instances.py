"""9d. The authors sweep with two instances: A authors on one note, split over two processes.

The authors of ``bench.scenarios.authors`` (5 keystrokes/s each at random places, one edit
awaiting its ack, the rest buffered), on one note. Each step runs twice in the same run, on a
fresh note each time: all authors on one instance (the reference), then even authors on instance
A and odd authors on instance B (two ``notes serve`` processes on one database,
``NOTES_DURABILITY=log``). Authors always spread over two load processes.

With two instances each process runs the operational transform for its own authors only and
sends each edit to its own sockets once its group commit is done; the same commit carries it to
the other process (the log row and a NOTIFY with the Yjs update), where it is merged into that
replica and becomes a revision there. Every author times every token it receives from the
others, split into tokens from an author on the same instance and tokens from the other
instance.

Check: the final text (GET on A and on B, which must agree) holds every token typed exactly
once; one observer per instance ends with that text.
"""

from __future__ import annotations

import asyncio
import time
from array import array

from bench import harness as h
from bench.clients import TOKEN, Follower, open_many, sha, wait_until
from bench.scenarios.authors import (
    Author,
    each_token_once,
    merged,
    past_cliff,
    pooled,
    type_steadily,
)


class SplitAuthor(Author):
    """An author that files each received token by the instance of the author who typed it."""

    def __init__(self, aid: int, seed: int, instance_of):
        super().__init__(aid, seed)
        self.instance_of = instance_of
        self.mine = instance_of(aid)
        self.lat_other = array("q")

    def received(self, payload: bytes, now: int) -> None:
        for m in TOKEN.finditer(payload):
            sink = self.lat if self.instance_of(int(m.group(1))) == self.mine else self.lat_other
            sink.append(now - int(m.group(3)))


def _instance_of(split: bool):
    return (lambda aid: aid % 2) if split else (lambda aid: 0)


async def author_worker(index: int, conf: dict, ctl: h.Control) -> None:
    ids, ports, path, rate = conf["ids"], conf["ports"], conf["path"], conf["rate"]
    instance_of = _instance_of(conf["split"])
    authors, errors = await open_many(
        len(ids), lambda i: SplitAuthor(ids[i], ids[i] * 7919 + 1, instance_of).open(
            ports[instance_of(ids[i])], f"{path}&a={ids[i]}"), 32)
    authors = [a for a in authors if a is not None]
    ctl.report("ready", {"joined": len(authors), "errors": errors})
    await ctl.wait_go()
    await type_steadily(authors, rate, time.monotonic(), conf["seconds"], conf["drain"])
    ctl.report("typed", {"typed": {a.aid: a.seq for a in authors}})
    finals = await ctl.command()  # each instance's final revision
    await wait_until(lambda: all(a.rev >= finals[a.mine] or not a.ws.is_open for a in authors),
                     conf["drain"])
    result = {**pooled(authors, lat="lat", lat_other="lat_other", rtt="ack_rtt"),
              "behind": sum(1 for a in authors if a.rev < finals[a.mine])}
    await asyncio.gather(*(a.ws.close() for a in authors), return_exceptions=True)
    ctl.report("result", result)


async def observer_worker(index: int, conf: dict, ctl: h.Control) -> None:
    obs = await Follower(record=False).open(conf["port"], conf["path"])
    ctl.report("ready", {"joined": 1, "errors": []})
    final = await ctl.command()
    await wait_until(lambda: obs.rev >= final or not obs.open_now, conf["drain"])
    ctl.report("result", {"text": obs.text, "rev": obs.rev, "gaps": obs.gaps,
                          "close": obs.close_code})
    await obs.ws.close()


def run_step(servers: list[h.Server], cluster: h.Cluster, count: int, seconds: float,
             rate: float) -> dict:
    split = len(servers) > 1
    first = servers[0]
    note_id = first.create_note("authors across instances", "")
    path = first.ws_path(note_id, "author")
    ports = [s.port for s in servers] * (2 // len(servers))
    confs = [{"ports": ports, "path": path, "ids": part, "rate": rate, "seconds": seconds,
              "split": split, "drain": 30} for part in h.split(list(range(1, count + 1)), 2)]
    authors = h.Workers(author_worker, confs).start()
    observers = h.Workers(observer_worker, [{"port": s.port, "path": path, "drain": 30}
                                            for s in servers]).start()
    ready = authors.collect("ready", 120) + observers.collect("ready", 60)
    join_errors = sum(len(r["errors"]) for r in ready)
    health0 = [s.health() for s in servers]
    meters = h.CellMeters(servers, cluster, authors.pids + observers.pids)
    authors.go.set()
    typed: dict[int, int] = {}
    for part in authors.collect("typed", seconds + 120):
        typed.update({int(k): v for k, v in part["typed"].items()})
    cpu = meters.read()
    # The instances converge (the last updates cross over), then each one's revision is final.
    deadline = time.monotonic() + 30
    while True:
        notes = [s.get_note(note_id) for s in servers]
        if len({n["content"] for n in notes}) == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    converged = len({n["content"] for n in notes}) == 1
    finals = [n["rev"] for n in notes]
    authors.send(finals * (2 // len(servers)))
    for i, q in enumerate(observers.cmd):
        q.put(finals[i])
    results = authors.collect("result", 120)
    obs = observers.collect("result", 60)
    health = [h.counts_since(before, s.health())
              for before, s in zip(health0, servers, strict=True)]
    authors.join()
    observers.join()
    pool = merged(results, "lat", "lat_other", "rtt")
    lat, lat_other, rtt = pool["lat"], pool["lat_other"], pool["rtt"]
    errors, closed = pool["errors"], pool["closed"]
    total = sum(typed.values())
    text = notes[0]["content"]
    text_ok = (each_token_once(text, typed) and converged
               and all(o["text"] == text and o["gaps"] == 0 for o in obs))
    possible = total * (count - 1)
    cpu_total = round(sum(c["cores"] for c in cpu["server_cpu"]), 2)
    return {
        "instances": len(servers), "authors": count, "rate": rate, "seconds": seconds,
        "typed": total, "revisions": finals,
        "latency_ms": h.percentiles(list(lat) + list(lat_other)),
        "same_instance_ms": h.percentiles(lat), "other_instance_ms": h.percentiles(lat_other),
        "ack_rtt_ms": h.percentiles(rtt),
        "delivery": round((len(lat) + len(lat_other)) / possible, 5) if possible else None,
        "errors": dict(errors), "closed": len(closed), "join_errors": join_errors,
        "behind": sum(r["behind"] for r in results),
        **{key: [d[key] for d in health] for key in ("log_commits", "log_entries", "catch_ups")},
        **cpu, "server_cpu_total": cpu_total,
        "text_ok": text_ok, "converged": converged, "text_sha": sha(text),
    }


def run(cluster: h.Cluster, quick: bool) -> dict:
    steps = [10, 50] if quick else [10, 25, 50, 75, 100, 150]
    seconds = 3 if quick else 8
    db = cluster.fresh_database("authors_instances")
    pair = h.start_instances(db, "authors2", 2, {"NOTES_DURABILITY": "log"})
    results: list[dict] = []
    cliff: dict[int, int | None] = {1: None, 2: None}
    try:
        for count in steps:
            for servers in (pair[:1], pair):
                n = len(servers)
                if cliff[n] is not None:
                    continue
                step = h.quiet_cell(run_step, servers, cluster, count, seconds, 5.0)
                results.append(step)
                lat, so = step["latency_ms"], step["other_instance_ms"]
                print(f"  authors2 {n} instance{'s' if n > 1 else ' '} A={count:<4} p50 "
                      f"{h.fmt_ms(lat['p50'])} p95 {h.fmt_ms(lat['p95'])} p99 "
                      f"{h.fmt_ms(lat['p99'])} ms (other instance p50 {h.fmt_ms(so['p50'])} "
                      f"p99 {h.fmt_ms(so['p99'])})  ack p50 {h.fmt_ms(step['ack_rtt_ms']['p50'])}"
                      f"  cpu {[c['cores'] for c in step['server_cpu']]} pg "
                      f"{step['postgres_cpu']['cores']} loadgen {step['loadgen_cpu']['cores']} "
                      f"others {step['others_cores_attempts']}  revisions {step['revisions']}  "
                      f"errors {step['errors']} closed {step['closed']} ok={step['text_ok']}",
                      flush=True)
                if past_cliff(step):
                    cliff[n] = count
            if all(v is not None for v in cliff.values()):
                break
    finally:
        h.stop_all(pair)
    return {
        "steps": results, "cliff": {str(k): v for k, v in cliff.items()},
        "cliff_rule": "first step with p95 > 2 s, an error, a closed socket or a lost token",
        "ok": all(s["text_ok"] for s in results),
    }


def rows(result: dict) -> list[list[str]]:
    out = []
    for s in result["steps"]:
        lat, so = s["latency_ms"], s["other_instance_ms"]
        mark = " <- cliff" if result["cliff"].get(str(s["instances"])) == s["authors"] else ""
        other = (f"; other instance p50 {h.fmt_ms(so['p50'])} / p99 {h.fmt_ms(so['p99'])}"
                 if so["n"] else "")
        out.append([f"authors2 {s['instances']}x A={s['authors']}{mark}",
                    f"p50 {h.fmt_ms(lat['p50'])} / p95 {h.fmt_ms(lat['p95'])} / p99 "
                    f"{h.fmt_ms(lat['p99'])} ms{other}",
                    f"server {s['server_cpu_total']} cores, pg {s['postgres_cpu']['cores']}, "
                    f"loadgen {s['loadgen_cpu']['cores']}, others {s['others_cores']}",
                    "ok" if s["text_ok"] else "WRONG"])
    return out
