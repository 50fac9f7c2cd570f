"""What one keystroke costs a note's document as the text grows (a diagnosis, not a scenario).

``python -m bench.replica_cost [--server-path DIR] [--every N]`` replays the automerge-paper
trace, one keystroke per revision, through two ``LiveDocument``s of the server's code in this
process: A applies each keystroke as a client's edit (``apply_edit``, what the instance the
writer is on does), B applies A's Yjs update of it as an update stored by another process
(``apply_update(..., stored=True)``, what every other instance does). Printed at a few points of
the trace: the median time of each over the last N keystrokes, and what ``str()`` of B's
``Text`` costs at that size (B's path reads the whole text once per update). The texts must end
equal to the trace's ``endContent``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replica_cost", description=__doc__)
    parser.add_argument("--server-path", help="the server's code from this directory (DIR/notes)")
    parser.add_argument("--every", type=int, default=2000, help="keystrokes per reading")
    args = parser.parse_args(argv)
    if args.server_path:
        sys.path.insert(0, str(Path(args.server_path).resolve()))
    from bench.clients import edit_delta, load_trace
    from notes.collab.document import LiveDocument

    strokes, start, end = load_trace(None)
    a = LiveDocument(content=start, title="trace", load_client_id=1)
    b = LiveDocument(state=a.encode_state(), load_client_id=1)
    points = {int(len(strokes) * f) // args.every for f in (0.1, 0.25, 0.5, 0.75, 1.0)}
    edit_ns: list[int] = []
    update_ns: list[int] = []
    print("keystrokes | text (chars) | A apply_edit p50 (us) | B apply_update p50 (us) | "
          "str(Text) on B (us)")
    for i, (pos, ndel, ins) in enumerate(strokes, 1):
        t0 = time.perf_counter_ns()
        a.apply_edit(a.rev, edit_delta(pos, ndel, ins))
        t1 = time.perf_counter_ns()
        b.apply_update(a.last_update, client=None, stored=True)
        t2 = time.perf_counter_ns()
        edit_ns.append(t1 - t0)
        update_ns.append(t2 - t1)
        if i % args.every == 0 or i == len(strokes):
            if i // args.every in points or i == len(strokes):
                text = b.text
                t3 = time.perf_counter_ns()
                for _ in range(20):
                    str(b.ytext)  # what apply_update reads once per update
                read = (time.perf_counter_ns() - t3) / 20
                print(f"{i} | {len(text)} | {statistics.median(edit_ns) / 1e3:.0f} | "
                      f"{statistics.median(update_ns) / 1e3:.0f} | {read / 1e3:.0f}", flush=True)
            edit_ns.clear()
            update_ns.clear()
    ok = a.text == b.text == end
    print(f"A and B end with endContent: {ok}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
