"""12b. The authors sweep on a server with two workers (``authors_workers``).

The sweep of ``bench.scenarios.authors`` (A JSON authors on one note, 5 keystrokes/s each at
random places), on ``notes serve --workers 2``: Sanic's worker processes share the port, so the
sockets of the one note land on both workers, each runs the operational transform for its own
sockets, and the updates cross between them through PostgreSQL (the update log and
LISTEN/NOTIFY), as between two instances (``authors_instances``).

The step runner is ``authors_mixed``'s (with no Yjs author): a step ends when every author has
received every token of the others and GET (asked until six answers in a row agree) has every
token. The server's CPU is its main process and every descendant (the workers); the /health
counters are per process, so they are read from each worker (asked until both pids answered)
and summed.
"""

from __future__ import annotations

import sys

from bench import harness as h
from bench.scenarios import authors_mixed

WORKERS = 2


def run(cluster: h.Cluster, quick: bool) -> dict:
    db = cluster.fresh_database("authors_workers")
    server = h.Server(db, name="authors-2w",
                      argv=[sys.executable, "-m", "notes", "serve", "--workers",
                            str(WORKERS)]).start()
    result = authors_mixed.sweep(server, cluster, quick, "authors_workers", yjs=False,
                                 processes=WORKERS)
    result["workers"] = WORKERS
    return result


def rows(result: dict) -> list[list[str]]:
    return authors_mixed.rows(result, label=f"authors {result.get('workers', WORKERS)} workers")
