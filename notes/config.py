"""Settings, read from environment variables with the prefix ``NOTES_``."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Every knob of the server. ``from_env`` reads ``NOTES_<FIELD>`` for each field."""

    database_url: str | None = None  # a postgresql:// URL; None means the embedded cluster
    database_wait: float = 30.0  # seconds to wait for NOTES_DATABASE_URL to answer at start
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path(".data")  # where the embedded cluster lives
    max_body: int = 1024 * 1024  # bytes in one HTTP request body
    max_title: int = 200  # code points in a title
    max_content: int = 1_000_000  # code points in a note's content (REST and live)
    page_size: int = 50  # default notes per page
    max_page_size: int = 200
    save_debounce: float = 2.0  # seconds of quiet before a live document is saved
    save_max_wait: float = 10.0  # longest an unsaved edit waits for its save
    history_limit: int = 2000  # revisions a live document keeps for transforming late edits
    ws_max_size: int = 2 * 1024 * 1024  # bytes in one websocket frame (close 1009 above)
    ws_ping_interval: float = 20.0
    ws_ping_timeout: float = 20.0
    ws_queue_size: int = 1000  # outgoing messages buffered per connection (close 1013 above)
    access_log: bool = False
    # "log": an acknowledged edit is in PostgreSQL (the update log, group commit). "debounce":
    # acknowledged at once and stored by the debounced save: fewest writes, but a crash loses up
    # to save_max_wait seconds of edits.
    durability: str = "log"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides) -> Settings:
        environ = os.environ if environ is None else environ
        values = {}
        for field in fields(cls):
            raw = environ.get(f"NOTES_{field.name.upper()}")
            if raw is None or raw == "":
                continue
            values[field.name] = _parse(field.type, raw, field.name)
        settings = replace(cls(**values), **overrides)
        if settings.durability not in DURABILITY:
            raise ValueError(f"NOTES_DURABILITY={settings.durability!r} is not one of "
                             + ", ".join(DURABILITY))
        return settings


DURABILITY = ("log", "debounce")


def _parse(kind: object, raw: str, name: str) -> object:
    kind = str(kind)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            return raw.strip().lower() in {"1", "true", "yes", "on"}
        if kind == "Path":
            return Path(raw)
    except ValueError as error:
        raise ValueError(f"NOTES_{name.upper()}={raw!r} is not a valid {kind}") from error
    return raw
