"""5. REST: GET and PUT of a note, a page of the listing and a search, single worker, measured with
wrk (Debian's), beside Sanic's own floor (bench/floor_app.py: one route, constant JSON, no
database) in the same run. The GET runs twice: with accounts off, and on a second server with
accounts on and a token; a third server (accounts on, `notes serve --workers 2`) answers the GET
and the search with a token, its CPU counted over all its processes.

wrk runs one thread with 32 connections for each case; the server is the one notes process (one
worker). PUT changes the content on every request (a counter in a small Lua script), so each one
is a real write: load the note into a room, apply the diff, save the row, unload.
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

from bench import harness as h

PUT_LUA = r"""
local counter = 0
request = function()
  counter = counter + 1
  local body = '{"title":"rest put","content":"put number ' .. counter .. ' from wrk"}'
  return wrk.format("PUT", nil, {["Content-Type"] = "application/json"}, body)
end
"""

WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
         "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo",
         "sierra", "tango", "uniform", "victor", "whiskey", "xray", "yankee")

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    return round(float(m.group(1)) * _UNITS[m.group(2)], 3)


def parse_wrk(out: str) -> dict:
    result: dict = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    result["rps"] = round(float(m.group(1))) if m else None
    m = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", out)
    if m:
        result["avg_ms"], result["max_ms"] = _ms(m.group(1)), _ms(m.group(3))
    for q in ("50", "90", "99"):
        m = re.search(rf"\s{q}%\s+(\S+)", out)
        result[f"p{q}_ms"] = _ms(m.group(1)) if m else None
    m = re.search(r"(\d+) requests in", out)
    result["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: (.*)", out)
    result["socket_errors"] = m.group(1).strip() if m else None
    return result


def wrk(url: str, seconds: int, connections: int, pid: int, script: str | None = None,
        header: str | None = None, tree: bool = False) -> dict:
    """``tree``: the server's CPU is its process and all its descendants' (its workers)."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    if script:
        cmd += ["-s", script]
    if header:
        cmd += ["-H", header]
    # Warm up (and let the server's database pool open its connections, so that their postgres
    # backends exist when their CPU is counted).
    subprocess.run(cmd[:3] + ["-d1s"] + cmd[4:] + [url], capture_output=True, timeout=60)
    cpu = h.TreeCpuMeter(pid) if tree else h.CpuMeter([pid])
    pg = h.CpuMeter(h.postgres_pids())
    machine = h.MachineMeter()
    proc = subprocess.Popen(cmd + [url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    wrk_cpu = h.CpuMeter([proc.pid])
    time.sleep(seconds * 0.9)
    wrk_used = wrk_cpu.read()  # before wrk exits and its /proc entry goes
    out, _ = proc.communicate(timeout=seconds + 60)
    result = parse_wrk(out)
    result["server_cpu"] = cpu.read()
    result["postgres_cpu"] = pg.read()
    result["wrk_cpu"] = wrk_used
    result["machine_cores"] = busy = machine.read()
    result["others_cores"] = round(max(0.0, busy - result["server_cpu"]["cores"]
                                       - result["postgres_cpu"]["cores"] - wrk_used["cores"]), 2)
    result["raw"] = out
    return result


def run(cluster: h.Cluster, quick: bool) -> dict:
    if not shutil.which("wrk"):
        raise RuntimeError("wrk is not installed: apt-get install -y wrk")
    seconds = 3 if quick else 8
    connections = 32
    db = cluster.fresh_database("rest")
    server = h.Server(db, name="rest").start()
    # The same, with accounts on (NOTES_AUTH=on, the default of `notes serve`): a token on every
    # request, so a credential lookup and a role check each.
    secured = h.Server(db, env={"NOTES_AUTH": "on"}, name="rest-auth").start()
    # And with two worker processes (`notes serve --workers 2`), for REST-heavy loads.
    workers = h.Server(db, env={"NOTES_AUTH": "on"}, name="rest-auth-2w",
                       argv=[sys.executable, "-m", "notes", "serve", "--workers", "2"]).start()
    floor = h.Server("", name="floor",
                     argv=[sys.executable, str(h.ROOT / "bench" / "floor_app.py"), "0"])
    floor.argv[-1] = str(floor.port)
    floor.start(health="/health")
    tmp = tempfile.mkdtemp(prefix="bench-wrk-")
    cases = {}
    try:
        rng = random.Random(1)
        content = " ".join(rng.choice(WORDS) for _ in range(350))  # about 2 KB
        get_id = server.create_note("rest get", content)
        put_id = server.create_note("rest put", "start")
        for i in range(300):  # the search corpus: "zulu" is in 10 of 300 notes
            words = [rng.choice(WORDS) for _ in range(80)]
            if i % 30 == 0:
                words[rng.randrange(80)] = "zulu"
            server.create_note(f"corpus {i}", " ".join(words))
        token = secured.sign_up(f"bench-{uuid.uuid4().hex[:8]}")
        bearer = f"Authorization: Bearer {token}"
        status, made = secured.request("POST", "/notes", {"title": "rest get", "content": content},
                                       headers={"authorization": f"Bearer {token}"})
        secured_id = made["id"]
        lua = f"{tmp}/put.lua"
        with open(lua, "w") as f:
            f.write(PUT_LUA)
        targets = [
            ("floor", floor, f"{floor.url}/floor", None, None),
            ("GET /notes/{id}", server, f"{server.url}/notes/{get_id}", None, None),
            ("GET /notes/{id} (token)", secured, f"{secured.url}/notes/{secured_id}", None,
             bearer),
            ("GET /notes?limit=10", server, f"{server.url}/notes?limit=10", None, None),
            ("GET /notes?q=zulu&limit=10", server, f"{server.url}/notes?q=zulu&limit=10", None,
             None),
            ("PUT /notes/{id}", server, f"{server.url}/notes/{put_id}", lua, None),
            ("GET /notes/{id} (token, 2 workers)", workers,
             f"{workers.url}/notes/{secured_id}", None, bearer),
            ("GET /notes?q=zulu&limit=10 (token, 2 workers)", workers,
             f"{workers.url}/notes?q=zulu&limit=10", None, bearer),
            ("floor (again)", floor, f"{floor.url}/floor", None, None),
        ]
        for name, proc, url, script, header in targets:
            r = h.quiet_cell(wrk, url, seconds, connections, proc.pid, script, header,
                             proc is workers)
            cases[name] = r
            print(f"  rest {name:<44} {r['rps']} req/s  p50 {r['p50_ms']} p99 {r['p99_ms']} ms  "
                  f"non-2xx {r['non_2xx']}  server cpu {r['server_cpu']['cores']} postgres "
                  f"{r['postgres_cpu']['cores']}  others {r['others_cores_attempts']}", flush=True)
        # Checks: the answers are right.
        got = server.get_note(get_id)
        get_ok = got["content"] == content
        status, page = server.request("GET", "/notes?q=zulu&limit=10")
        search_ok = (status == 200 and len(page["items"]) == 10
                     and all("zulu" in n["content"] for n in page["items"]))
        auth = {"authorization": f"Bearer {token}"}
        for proc in (secured, workers):
            status, note = proc.request("GET", f"/notes/{secured_id}", headers=auth)
            get_ok = get_ok and status == 200 and note["content"] == content
            status, page = proc.request("GET", "/notes?q=zulu&limit=10", headers=auth)
            search_ok = search_ok and status == 200 and len(page["items"]) == 10
        final = f"final put {uuid.uuid4()}"
        status, _ = server.request("PUT", f"/notes/{put_id}", {"title": "rest put",
                                                                 "content": final})
        stored = h.sql(db, "SELECT content FROM notes WHERE id = $1", uuid.UUID(put_id))
        put_ok = status == 200 and server.get_note(put_id)["content"] == final \
            and stored[0][0] == final
    finally:
        server.stop()
        secured.stop()
        workers.stop()
        floor.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    floor_rps = max(cases["floor"]["rps"], cases["floor (again)"]["rps"])
    for r in cases.values():
        r["vs_floor"] = round(r["rps"] / floor_rps, 3) if r["rps"] else None
    errors = sum(r["non_2xx"] for r in cases.values())
    ratio = cases["GET /notes/{id} (token)"]["vs_floor"]
    return {
        "seconds": seconds, "connections": connections, "cases": cases,
        "checks": {"get": get_ok, "search": search_ok, "put": put_ok, "non_2xx": errors},
        "target": {"what": "REST GET of a note, with a token, >= half of Sanic's floor",
                   "measured": f"{ratio} of the floor", "met": bool(ratio and ratio >= 0.5)},
        "ok": get_ok and search_ok and put_ok and errors == 0,
    }


def rows(result: dict) -> list[list[str]]:
    out = []
    for name, r in result["cases"].items():
        out.append([f"rest {name}",
                    f"{r['rps']} req/s; p50 {r['p50_ms']} / p99 {r['p99_ms']} / max "
                    f"{r['max_ms']} ms",
                    f"{r['vs_floor']} of floor, server {r['server_cpu']['cores']} cores, pg "
                    f"{r['postgres_cpu']['cores']}, others {r['others_cores']}",
                    "ok" if result["ok"] else "WRONG"])
    return out
