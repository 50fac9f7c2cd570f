"""Markdown tables from a results JSON: ``python -m bench.report bench/results/<file>.json``.

docs/benchmarks.md pastes this output, so the published numbers are exactly those of one run.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable

from bench.harness import fmt_ms


def _lat(p: dict) -> str:
    return " / ".join(fmt_ms(p[k]) for k in ("p50", "p95", "p99", "max"))


def _p(p: dict | None, keys=("p50", "p99")) -> str:
    return "-" if not p or not p.get("n") else " / ".join(fmt_ms(p[k]) for k in keys)


def _ok(flag) -> str:
    return "ok" if flag else "WRONG"


def _cores(*readings: dict, sep: str = " / ") -> str:
    """CPU readings (``{"cores": ...}``) side by side."""
    return sep.join(str(c["cores"]) for c in readings)


def _table(columns: list[str], rows: Iterable[list]) -> list[str]:
    """A markdown table. A column whose name ends with ``>`` is aligned right (numbers)."""
    names = [c.removesuffix(">") for c in columns]
    align = ["---:" if c.endswith(">") else "---" for c in columns]
    return [f"| {' | '.join(names)} |", f"|{'|'.join(align)}|",
            *(f"| {' | '.join(str(cell) for cell in row)} |" for row in rows)]


def fanout(r: dict) -> list[str]:
    return _table(
        ["subscribers>", "edits/s>", "latency p50 / p95 / p99 / max (ms)", "delivery>",
         "server CPU (cores)>", "load generators>", "other work>", "text"],
        ([c["subscribers"], f"{c['rate']:g}", _lat(c["latency_ms"]), f"{c['delivery']:.4f}",
          c["server_cpu"]["cores"], c["loadgen_cpu"]["cores"], c["others_cores"],
          _ok(c["text_ok"])] for c in r["cells"]))


def authors(r: dict) -> list[str]:
    return _table(
        ["authors>", "keystrokes>", "revisions>", "latency p50 / p95 / p99 / max (ms)",
         "ack p50 (ms)>", "server CPU>", "load generators>", "other work>", "errors / closed",
         "text"],
        ([f"{s['authors']}{' (cliff)' if s['authors'] == r['cliff'] else ''}", s["typed"],
          s["revisions"], _lat(s["latency_ms"]), fmt_ms(s["ack_rtt_ms"]["p50"]),
          s["server_cpu"]["cores"], s["loadgen_cpu"]["cores"], s["others_cores"],
          f"{sum(s['errors'].values())} / {s['closed']}", _ok(s["text_ok"])]
         for s in r["steps"]))


def trace(r: dict) -> list[str]:
    def ok(x: dict) -> str:
        return (f"{x['observers_ok']}/{x['observers']}, {'yes' if x['live_ok'] else 'NO'}, "
                f"{'yes' if x['stored_ok'] else 'NO'}")

    return _table(
        ["writer", "keystrokes>", "revisions>", "wall (s)>", "edits/s>", "writer ack p50 (ms)>",
         "observer latency p50 / p95 / p99 / max (ms)", "server CPU>", "other work>",
         "observers, live, stored = endContent", "cold join / GET (ms)", "Yjs state (bytes)>"],
        ([x["mode"], x["keystrokes"], x["revisions"], x["wall_s"], x["edits_per_s"],
          fmt_ms(x["ack_rtt_ms"]["p50"]), _lat(x["observer_latency_ms"]),
          x["server_cpu"]["cores"], x["others_cores"], ok(x),
          f"{x['cold_load']['join_cold_ms']} / {x['cold_load']['get_ms']}",
          x["yjs_state_bytes"]] for x in r["runs"]))


def saves(r: dict) -> list[str]:
    return _table(
        ["phase", "keystrokes>", "DB writes (n_tup_upd / version)>", "per 1,000 edits>",
         "writes per note>", "edit ack p50 / p95 / p99 / max (ms)",
         "keystroke to `saved` p50 / p99 (ms)", "server CPU>", "other work>"],
        ([p["phase"], p["keystrokes"], f"{p['db_writes']} / {p.get('db_writes_by_version', '-')}",
          p["writes_per_1000_edits"], f"{p['writes_per_note_min']}-{p['writes_per_note_max']}",
          _lat(p["edit_ack_ms"]),
          f"{fmt_ms(p['save_latency_ms']['p50'])} / {fmt_ms(p['save_latency_ms']['p99'])}",
          p["server_cpu"]["cores"], p["others_cores"]] for p in r["phases"]))


def rest(r: dict) -> list[str]:
    return _table(
        ["case", "requests/s>", "p50 / p90 / p99 / max (ms)", "vs floor>", "server CPU>",
         "postgres CPU>", "wrk CPU>", "other work>"],
        ([name, c["rps"], f"{c['p50_ms']} / {c['p90_ms']} / {c['p99_ms']} / {c['max_ms']}",
          c["vs_floor"], c["server_cpu"]["cores"], c["postgres_cpu"]["cores"],
          c["wrk_cpu"]["cores"], c["others_cores"]] for name, c in r["cases"].items()))


def idle(r: dict) -> list[str]:
    return _table(
        ["sockets>", "new>", "join p50 / p95 / p99 / max (ms)", "joins/s>",
         "server CPU while joining>", "RSS (MB)>", "per socket (KB)>", "server CPU idle>",
         "open at the end>"],
        ([s["connections"], s["new"], _lat(s["join_ms"]), s["joins_per_s"],
          s["join_server_cpu"]["cores"], f"{s['rss_mb']} (base {s['rss_base_mb']})",
          s["rss_per_connection_kb"], s["idle_server_cpu"]["cores"], s["open"]]
         for s in r["steps"]))


def yjs_fanout(r: dict) -> list[str]:
    def rows():
        for name, entry in r["servers"].items():
            for c in entry["cells"]:
                if "error" in c:
                    yield [name, c["subscribers"], "", "FAILED", *[""] * 8]
                    continue
                ratio = r.get("ratios", {}).get(name, {}).get(str(c["subscribers"]))
                vs = f"{ratio['p50']} / {ratio['p99']}" if ratio else "-"
                cpu_vs = (ratio["server_cpu"] if ratio and ratio["server_cpu"] is not None
                          else "-")
                yield [name, c["subscribers"], f"{c['rate']:g}", _lat(c["latency_ms"]), vs,
                       f"{c['delivery']:.4f}",
                       f"{fmt_ms(c['join_ms']['p50'])} / {fmt_ms(c['join_ms']['max'])}",
                       c["server_cpu"]["cores"], cpu_vs, c["loadgen_cpu"]["cores"],
                       c["others_cores"], _ok(c["text_ok"])]
            if "error" in entry:
                first = entry["error"].strip().splitlines()[0]
                yield [name, "", "", f"FAILED: {first}", *[""] * 8]

    v = r.get("versions", {})
    return [*_table(["server", "subscribers>", "edits/s>", "latency p50 / p95 / p99 / max (ms)",
                     "p50 / p99 vs ours", "delivery>", "join p50 / max (ms)",
                     "server CPU (cores)>", "CPU vs ours>", "load generators>", "other work>",
                     "text"], rows()),
            "", "Versions: " + ", ".join(f"{k} {v[k]}" for k in v if v[k]) + "."]


def durability(r: dict) -> list[str]:
    def load(c: dict) -> str:
        if c["load"] == "typing":
            return f"{c['clients']} clients x {c['rate_per_client']:g}/s, {c['notes']} notes"
        return (f"burst: {c['clients']} clients at once x {c['burst']['rounds']}, "
                f"{c['notes']} notes")

    out = _table(
        ["durability", "load", "edits (keystrokes)>", "ack p50 / p95 / p99 / max (ms)",
         "keystroke to ack p50 / p99", "others see it p50 / p99", "log commits + saves>",
         "commits per 1,000 edits>", "durable commits per 1,000 edits>",
         "group-commit factor>", "WAL flushes per 1,000 edits>", "server CPU>",
         "PostgreSQL CPU>", "load generators>", "other work>", "text"],
        ([c["mode"], load(c), f"{c['edits']} ({c['keystrokes']})", _lat(c["ack_rtt_ms"]),
          _p(c["keystroke_to_ack_ms"]), _p(c["others_see_ms"]),
          f"{c['log_commits']}{'' if c['mode'] == 'log' else ' (NOTIFY only)'} + {c['saves']}",
          c["commits_per_1000_edits"], c["durable_writes_per_1000_edits"],
          c["group_commit_factor"], c["wal_syncs_per_1000_edits"], c["server_cpu"]["cores"],
          c["postgres_cpu"]["cores"], c["loadgen_cpu"]["cores"], c["others_cores"],
          _ok(c["text_ok"])] for c in r["cells"]))
    out += ["", "Commit floor (same cluster, no server: one asyncpg connection; `log_append` "
            "and `log_journal`: the server's own commit path in a process of its own):", ""]
    out += _table(
        ["statement", "latency p50 / p95 / p99 / max (ms)", "per second>", "WAL flushes>"],
        ([name + (f" ({f['commits']} commits)" if f.get("commits") else ""),
          _lat(f["latency_ms"]), f["per_s"], "-" if f["wal_syncs"] is None else f["wal_syncs"]]
         for name, f in r["commit_floor"].items()))
    settings = r.get("pg_settings", {})
    out += ["", "PostgreSQL: " + ", ".join(f"{k}={v}" for k, v in sorted(settings.items())) + "."]
    return out


def fanout_instances(r: dict) -> list[str]:
    def factor(c: dict):
        return round(c["log_entries_a"] / c["log_commits_a"], 2) if c["log_commits_a"] else "-"

    return _table(
        ["durability", "subscribers (A + B)", "edits/s>",
         "same instance p50 / p95 / p99 / max (ms)", "other instance p50 / p95 / p99 / max (ms)",
         "writer ack p50 / p99 (ms)", "delivery A / B", "log commits (factor)>",
         "CPU A / B / PostgreSQL", "load generators>", "other work>", "text"],
        ([c["mode"], f"{c['same_instance']['subscribers']} + {c['other_instance']['subscribers']}",
          f"{c['rate']:g}", _lat(c["same_instance"]["latency_ms"]),
          _lat(c["other_instance"]["latency_ms"]), _p(c["writer_ack_ms"]),
          f"{c['same_instance']['delivery']:.4f} / {c['other_instance']['delivery']:.4f}",
          f"{c['log_commits_a']} ({factor(c)})",
          _cores(c["server_a_cpu"], c["server_b_cpu"], c["postgres_cpu"]),
          c["loadgen_cpu"]["cores"], c["others_cores"], _ok(c["text_ok"])]
         for c in r["cells"]))


def trace_instances(r: dict) -> list[str]:
    def ok(x: dict) -> str:
        sa, sb = x["same_instance"], x["other_instance"]
        return ", ".join("yes" if v else "NO" for v in (
            sa["text_ok"] and sa["live_ok"],
            sb["text_ok"] and sb["live_ok"] and sb["revisions_match"], x["stored_ok"]))

    return _table(
        ["writer (into A)", "keystrokes>", "revisions>", "writer ack p50 / p99 (ms)",
         "observer on A: edits/s, latency p50 / p99 (ms)", "observer on B: edits/s>",
         "on B: latency p50 / p95 / p99 / max (ms)", "on B: revisions/s, first / last tenth",
         "log commits (factor)>", "CPU A / B / PostgreSQL", "other work>",
         "A, B, stored = end text"],
        ([x["mode"], x["keystrokes"], x["revisions"], _p(x["writer_ack_ms"]),
          f"{x['same_instance']['edits_per_s']}, {_p(x['same_instance']['latency_ms'])}",
          x["other_instance"]["edits_per_s"],
          _lat(x["other_instance"]["latency_ms"]) if x["other_instance"]["latency_ms"]
          else "not matched", _ends(x["other_instance"].get("revisions_per_s_by_tenth")),
          f"{x['log_commits']} ({x['group_commit_factor']})",
          _cores(x["server_a_cpu"], x["server_b_cpu"], x["postgres_cpu"]), x["others_cores"],
          ok(x)] for x in r["runs"]))


def _ends(tenths: list | None) -> str:
    return f"{tenths[0]} / {tenths[-1]}" if tenths else "-"


def authors_instances(r: dict) -> list[str]:
    return _table(
        ["authors>", "instances>", "keystrokes>", "revisions", "latency p50 / p95 / p99 / max (ms)",
         "same instance p50 / p99", "other instance p50 / p99", "ack p50 / p99 (ms)",
         "server CPU", "PostgreSQL CPU>", "load generators>", "other work>", "errors / closed",
         "text"],
        ([f"{s['authors']}"
          f"{' (cliff)' if r['cliff'].get(str(s['instances'])) == s['authors'] else ''}",
          s["instances"], s["typed"], " / ".join(str(v) for v in s["revisions"]),
          _lat(s["latency_ms"]), _p(s["same_instance_ms"]), _p(s["other_instance_ms"]),
          _p(s["ack_rtt_ms"]), _cores(*s["server_cpu"], sep=" + "), s["postgres_cpu"]["cores"],
          s["loadgen_cpu"]["cores"], s["others_cores"],
          f"{sum(s['errors'].values())} / {s['closed']}", _ok(s["text_ok"])]
         for s in r["steps"]))


def authors_mixed(r: dict) -> list[str]:
    """Half the authors on Yjs (odd ids), or (``authors_workers``) all JSON on 2 workers."""
    yjs = any(s.get("yjs_authors") for s in r["steps"])
    split = ["JSON receivers p50 / p99", "Yjs receivers p50 / p99",
             "tokens typed on Yjs p50 / p99"] if yjs else []
    return _table(
        ["authors>", *(["Yjs authors>"] if yjs else ["server processes>"]), "keystrokes>",
         "revisions>", "latency p50 / p95 / p99 / max (ms)", *split,
         "ack p50 / p99 (ms)", "delivery>", "server CPU>", "PostgreSQL CPU>",
         "load generators>", "machine>", "other work>", "errors / closed", "text"],
        ([f"{s['authors']}{' (cliff)' if s['authors'] == r['cliff'] else ''}",
          s["yjs_authors"] if yjs else s["server_processes"], s["typed"], s["revisions"],
          _lat(s["latency_ms"]),
          *([_p(s["json_receivers_ms"]), _p(s["yjs_receivers_ms"]),
             _p(s["yjs_senders_ms"])] if yjs else []),
          _p(s["ack_rtt_ms"]), s["delivery"], s["server_cpu"]["cores"],
          s["postgres_cpu"]["cores"], s["loadgen_cpu"]["cores"], s["machine_cores"],
          s["others_cores"], f"{sum(s['errors'].values())} / {s['closed']}", _ok(s["text_ok"])]
         for s in r["steps"]))


authors_workers = authors_mixed


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
