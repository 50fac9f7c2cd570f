"""One module per scenario (issues 5, 8 and 9), each with ``run(cluster, quick)`` and
``rows(result)``."""

NAMES = ["fanout", "authors", "trace", "saves", "rest", "idle", "yjs_fanout", "durability",
         "fanout_instances", "trace_instances", "authors_instances", "authors_mixed",
         "authors_workers"]
