"""``python -m bench``: run every scenario (or those named), print a table, write JSON."""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from bench import harness as h
from bench.scenarios import NAMES


def table(results: dict) -> str:
    lines = []
    rows = []
    for name, result in results.items():
        if "error" in result:
            rows.append([name, "FAILED: " + result["error"].strip().splitlines()[-1], "", ""])
            continue
        module = importlib.import_module(f"bench.scenarios.{name}")
        rows.extend(module.rows(result))
    widths = [max(len(r[i]) for r in rows) for i in range(4)] if rows else [0] * 4
    header = ["case", "latency / throughput", "detail", "check"]
    widths = [max(w, len(hd)) for w, hd in zip(widths, header, strict=True)]
    fmt = " | ".join(f"{{:<{w}}}" for w in widths)
    lines.append(fmt.format(*header))
    lines.append("-+-".join("-" * w for w in widths))
    for r in rows:
        lines.append(fmt.format(*r))
    lines.append("")
    lines.append("Targets:")
    for result in results.values():
        target = result.get("target")
        if target:
            mark = "n/a " if target["met"] is None else "MET " if target["met"] else "MISS"
            lines.append(f"  {mark} {target['what']}: "
                         f"{target.get('measured_ms', target.get('measured'))}")
    return "\n".join(lines)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("scenarios", nargs="*", choices=[[]] + NAMES, metavar="SCENARIO",
                        help=f"any of {', '.join(NAMES)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (1-2 minutes)")
    parser.add_argument("--quiet-wait", type=float, default=None,
                        help="before each measured cell, wait up to this many seconds for other "
                        "work on the machine to use < 0.35 cores, and run a cell again once if "
                        "other work disturbed it (default 60; --quick: 0, no retry)")
    parser.add_argument("--server-path", help="run the notes server from this directory "
                        "(put first on its PYTHONPATH), e.g. a patched copy of the package")
    parser.add_argument("--out", help="JSON file (default bench/results/<time>[-quick].json)")
    args = parser.parse_args(argv)
    # Stop cleanly (servers, load processes, the embedded cluster) on Ctrl-C or SIGTERM, also
    # when started in the background (where a shell leaves SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    names = args.scenarios or NAMES
    h.raise_nofile()
    if args.server_path:
        h.SERVER_PYTHONPATH = str(Path(args.server_path).resolve())
    wait = args.quiet_wait if args.quiet_wait is not None else (0.0 if args.quick else 60.0)
    h.QUIET.update(wait=wait, retries=1 if wait > 0 else 0)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or str(h.RESULTS / f"{stamp}{'-quick' if args.quick else ''}.json")
    report = {"started": stamp, "quick": args.quick, "machine": h.machine(),
              "server_path": h.SERVER_PYTHONPATH, "git": h.git_head(),
              "compression": "off: the clients offer no websocket extension and Sanic's "
                             "ServerProtocol negotiates none (checked per run)",
              "results": {}}
    print(f"machine: {report['machine']}", flush=True)
    cluster = h.Cluster().start()
    t0 = time.monotonic()
    try:
        for name in names:
            quiet = h.wait_quiet(min(h.QUIET["wait"], 30))
            print(f"== {name}  (other work on the machine: {quiet['others_cores']} cores, "
                  f"waited {quiet['waited_s']} s)", flush=True)
            started = time.monotonic()
            module = importlib.import_module(f"bench.scenarios.{name}")
            try:
                result = module.run(cluster, args.quick)
            except Exception:
                result = {"error": traceback.format_exc()}
                print(result["error"], flush=True)
            result["elapsed_s"] = round(time.monotonic() - started, 1)
            result["machine_before"] = quiet
            report["results"][name] = result
            h.RESULTS.mkdir(parents=True, exist_ok=True)
            with open(out, "w") as f:
                json.dump(report, f, indent=1, default=str)
    finally:
        cluster.stop()
    report["elapsed_s"] = round(time.monotonic() - t0, 1)
    with open(out, "w") as f:
        json.dump(report, f, indent=1, default=str)
    print()
    print(table(report["results"]))
    print(f"\n{report['elapsed_s']} s; JSON in {out}")
    failed = [n for n, r in report["results"].items() if "error" in r or not r.get("ok", True)]
    if failed:
        print(f"failed or wrong: {', '.join(failed)}")
    return 1 if failed else 0
