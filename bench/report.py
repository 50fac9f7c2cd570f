"""Markdown tables from a results JSON: ``python -m bench.report bench/results/<file>.json``.

docs/benchmarks.md pastes this output, so the published numbers are exactly those of one run.
"""

from __future__ import annotations

import json
import sys

from bench.harness import fmt_ms


def _lat(p: dict) -> str:
    return " / ".join(fmt_ms(p[k]) for k in ("p50", "p95", "p99", "max"))


def fanout(r: dict) -> list[str]:
    out = ["| subscribers | edits/s | latency p50 / p95 / p99 / max (ms) | delivery | server CPU "
           "(cores) | load generators | other work | text |",
           "|---:|---:|---|---:|---:|---:|---:|---|"]
    for c in r["cells"]:
        out.append(f"| {c['subscribers']} | {c['rate']:g} | {_lat(c['latency_ms'])} | "
                   f"{c['delivery']:.4f} | {c['server_cpu']['cores']} | "
                   f"{c['loadgen_cpu']['cores']} | {c['others_cores']} | "
                   f"{'ok' if c['text_ok'] else 'WRONG'} |")
    return out


def authors(r: dict) -> list[str]:
    out = ["| authors | keystrokes | revisions | latency p50 / p95 / p99 / max (ms) | ack p50 (ms) "
           "| server CPU | load generators | other work | errors / closed | text |",
           "|---:|---:|---:|---|---:|---:|---:|---:|---|---|"]
    for s in r["steps"]:
        mark = " (cliff)" if s["authors"] == r["cliff"] else ""
        out.append(f"| {s['authors']}{mark} | {s['typed']} | {s['revisions']} | "
                   f"{_lat(s['latency_ms'])} | {fmt_ms(s['ack_rtt_ms']['p50'])} | "
                   f"{s['server_cpu']['cores']} | {s['loadgen_cpu']['cores']} | "
                   f"{s['others_cores']} | {sum(s['errors'].values())} / {s['closed']} | "
                   f"{'ok' if s['text_ok'] else 'WRONG'} |")
    return out


def trace(r: dict) -> list[str]:
    out = ["| writer | keystrokes | revisions | wall (s) | edits/s | writer ack p50 (ms) | "
           "observer latency p50 / p95 / p99 / max (ms) | server CPU | other work | observers, "
           "live, stored = endContent | cold join / GET (ms) | Yjs state (bytes) |",
           "|---|---:|---:|---:|---:|---:|---|---:|---:|---|---|---:|"]
    for x in r["runs"]:
        ok = (f"{x['observers_ok']}/{x['observers']}, {'yes' if x['live_ok'] else 'NO'}, "
              f"{'yes' if x['stored_ok'] else 'NO'}")
        cold = x["cold_load"]
        out.append(f"| {x['mode']} | {x['keystrokes']} | {x['revisions']} | {x['wall_s']} | "
                   f"{x['edits_per_s']} | {fmt_ms(x['ack_rtt_ms']['p50'])} | "
                   f"{_lat(x['observer_latency_ms'])} | {x['server_cpu']['cores']} | "
                   f"{x['others_cores']} | {ok} | {cold['join_cold_ms']} / {cold['get_ms']} | "
                   f"{x['yjs_state_bytes']} |")
    return out


def saves(r: dict) -> list[str]:
    out = ["| phase | keystrokes | DB writes (n_tup_upd / version) | per 1,000 edits | writes per "
           "note | edit ack p50 / p95 / p99 / max (ms) | keystroke to `saved` p50 / p99 (ms) | "
           "server CPU | other work |",
           "|---|---:|---:|---:|---:|---|---|---:|---:|"]
    for p in r["phases"]:
        s = p["save_latency_ms"]
        out.append(f"| {p['phase']} | {p['keystrokes']} | {p['db_writes']} / "
                   f"{p.get('db_writes_by_version', '-')} | {p['writes_per_1000_edits']} | "
                   f"{p['writes_per_note_min']}-{p['writes_per_note_max']} | "
                   f"{_lat(p['edit_ack_ms'])} | "
                   f"{fmt_ms(s['p50'])} / {fmt_ms(s['p99'])} | {p['server_cpu']['cores']} | "
                   f"{p['others_cores']} |")
    return out


def rest(r: dict) -> list[str]:
    out = ["| case | requests/s | p50 / p90 / p99 / max (ms) | vs floor | server CPU | postgres "
           "CPU | wrk CPU | other work |",
           "|---|---:|---|---:|---:|---:|---:|---:|"]
    for name, c in r["cases"].items():
        out.append(f"| {name} | {c['rps']} | {c['p50_ms']} / {c['p90_ms']} / {c['p99_ms']} / "
                   f"{c['max_ms']} | {c['vs_floor']} | {c['server_cpu']['cores']} | "
                   f"{c['postgres_cpu']['cores']} | {c['wrk_cpu']['cores']} | "
                   f"{c['others_cores']} |")
    return out


def idle(r: dict) -> list[str]:
    out = ["| sockets | new | join p50 / p95 / p99 / max (ms) | joins/s | server CPU while "
           "joining | RSS (MB) | per socket (KB) | server CPU idle | open at the end |",
           "|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for s in r["steps"]:
        out.append(f"| {s['connections']} | {s['new']} | {_lat(s['join_ms'])} | "
                   f"{s['joins_per_s']} | {s['join_server_cpu']['cores']} | {s['rss_mb']} "
                   f"(base {s['rss_base_mb']}) | {s['rss_per_connection_kb']} | "
                   f"{s['idle_server_cpu']['cores']} | {s['open']} |")
    return out


def yjs_fanout(r: dict) -> list[str]:
    out = ["| server | subscribers | edits/s | latency p50 / p95 / p99 / max (ms) | p50 / p99 vs "
           "ours | delivery | join p50 / max (ms) | server CPU (cores) | CPU vs ours | load "
           "generators | other work | text |",
           "|---|---:|---:|---|---|---:|---|---:|---:|---:|---:|---|"]
    for name, entry in r["servers"].items():
        for c in entry["cells"]:
            if "error" in c:
                out.append(f"| {name} | {c['subscribers']} | | FAILED | | | | | | | | |")
                continue
            ratio = r.get("ratios", {}).get(name, {}).get(str(c["subscribers"]))
            vs = f"{ratio['p50']} / {ratio['p99']}" if ratio else "-"
            cpu_vs = ratio["server_cpu"] if ratio and ratio["server_cpu"] is not None else "-"
            out.append(f"| {name} | {c['subscribers']} | {c['rate']:g} | {_lat(c['latency_ms'])} | "
                       f"{vs} | {c['delivery']:.4f} | {fmt_ms(c['join_ms']['p50'])} / "
                       f"{fmt_ms(c['join_ms']['max'])} | {c['server_cpu']['cores']} | {cpu_vs} | "
                       f"{c['loadgen_cpu']['cores']} | {c['others_cores']} | "
                       f"{'ok' if c['text_ok'] else 'WRONG'} |")
        if "error" in entry:
            first = entry["error"].strip().splitlines()[0]
            out.append(f"| {name} | | | FAILED: {first} | | | | | | | | |")
    v = r.get("versions", {})
    out.append("")
    out.append("Versions: " + ", ".join(f"{k} {v[k]}" for k in v if v[k]) + ".")
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    for path in argv:
        with open(path) as f:
            report = json.load(f)
        print(f"<!-- {path}: server {report.get('git')}, quick={report['quick']}, "
              f"{report.get('elapsed_s')} s -->")
        for name, result in report["results"].items():
            if "error" in result:
                print(f"\n{name}: FAILED\n")
                continue
            print(f"\n#### {name}\n")
            print("\n".join(globals()[name](result)))
            if result.get("target"):
                t = result["target"]
                verdict = "n/a" if t["met"] is None else "met" if t["met"] else "missed"
                print(f"\nTarget: {t['what']}: {verdict} "
                      f"({t.get('measured_ms', t.get('measured'))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
