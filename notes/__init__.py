"""notes: a collaborative notes server (REST + live editing over websockets, on PostgreSQL)."""

__version__ = "0.1.0"
