"""One module per scenario of issue 5, each with ``run(cluster, quick)`` and ``rows(result)``."""

NAMES = ["fanout", "authors", "trace", "saves", "rest", "idle", "yjs_fanout"]
