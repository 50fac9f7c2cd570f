"""Benchmarks for the notes server: ``python -m bench [--quick] [SCENARIO ...]`` (see docs/benchmarks.md)."""
