"""Persistence: the notes table, its queries, and the embedded PostgreSQL."""
