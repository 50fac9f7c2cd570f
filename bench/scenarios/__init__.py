"""One module per scenario of issue 5; each has ``run(cluster, quick) -> dict`` and ``rows(result)``."""

NAMES = ["fanout", "authors", "trace", "saves", "rest", "idle"]
