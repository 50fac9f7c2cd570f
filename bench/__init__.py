"""Benchmarks for the notes server: ``python -m bench [--quick] [SCENARIO ...]``.

See docs/benchmarks.md.
"""
