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
    # The listen socket's backlog: connections the kernel queues before the server accepts them
    # (capped by net.core.somaxconn). Sanic's default, 100, is too few when thousands of clients
    # connect at once, e.g. every socket reconnecting after a restart.
    backlog: int = 1024
    # Slow or idle HTTP clients (slowloris): a request's head and body must arrive within
    # request_timeout seconds, an idle keep-alive connection is closed after keep_alive_timeout,
    # and a handler gets response_timeout seconds (503 after). Websockets are not affected.
    request_timeout: float = 15.0
    keep_alive_timeout: float = 30.0
    response_timeout: float = 60.0
    data_dir: Path = Path(".data")  # where the embedded cluster lives
    max_body: int = 1024 * 1024  # bytes in one HTTP request body
    max_title: int = 200  # code points in a title
    max_content: int = 1_000_000  # code points in a note's content (REST and live)
    page_size: int = 50  # default notes per page
    max_page_size: int = 200
    save_debounce: float = 2.0  # seconds of quiet before a live document is saved
    save_max_wait: float = 10.0  # longest an unsaved edit waits for its save
    history_limit: int = 2000  # revisions a live document keeps for transforming late edits
    # Notes open (loaded) in one process: opening one more first unloads the least recently
    # used idle, saved ones. A note with sockets, a request or unsaved changes stays open (the
    # new one opens anyway, with a warning). 0: no limit.
    max_open_notes: int = 10000
    ws_max_size: int = 2 * 1024 * 1024  # bytes in one websocket frame (close 1009 above)
    ws_ping_interval: float = 20.0
    ws_ping_timeout: float = 20.0
    ws_queue_size: int = 1000  # outgoing messages buffered per connection (close 1013 above)
    # A socket's frames go out in one write per turn of the event loop, and at most one write
    # per socket in this many milliseconds while the server is busy (0: every turn).
    ws_batch_ms: float = 5.0
    # Messages a socket may send (JSON: every frame; Yjs: updates and awareness): this many a
    # second, in bursts of up to ws_burst; past it `rate_limited` (JSON) and then close 1008
    # (docs/protocol.md). 0: no limit.
    ws_rate: float = 50.0
    ws_burst: int = 200
    access_log: bool = False
    log_format: str = "text"  # "json": one JSON object per line
    # "log": an acknowledged edit is in PostgreSQL (the update log, group commit). "debounce":
    # acknowledged at once and stored by the debounced save: fewest writes, but a crash loses up
    # to save_max_wait seconds of edits.
    durability: str = "log"
    # Accounts. "on": every note belongs to someone and needs credentials; "off": open to
    # whoever reaches the port (a private machine only).
    auth: str = "on"
    signup: str = "open"  # "closed": accounts come from `notes users add NAME`
    cookie_secure: bool = False  # mark the session cookie Secure (set behind HTTPS)
    allowed_origins: str = ""  # comma-separated origins, besides this server's own, for cookies
    public_url: str = ""  # how users reach the server (https://notes.example), for share links
    session_days: float = 30.0
    login_attempts: int = 5  # failed sign-ins per username ...
    login_address_attempts: int = 50  # ... and per client address ...
    login_window: float = 300.0  # ... within this many seconds, then 429
    # REST writes (POST, PUT, PATCH, DELETE) per signed-in user, else per client address: this
    # many a second, in bursts of up to rest_write_burst; past it 429 with Retry-After. 0: no
    # limit. Per process.
    rest_write_rate: float = 20.0
    rest_write_burst: int = 100
    # Sockets (both protocols) open at once per note, per user and per client address, per
    # process; past it the socket is closed with 1013. 0: no limit.
    ws_per_note: int = 500
    ws_per_user: int = 100
    ws_per_address: int = 200
    trash_days: float = 30.0  # a trashed note is deleted for good after this many days
    trash_purge_interval: float = 3600.0  # seconds between two purges of the trash
    # GET /metrics (Prometheus) answers a scraper sending `Authorization: Bearer` this; empty:
    # no /metrics (404).
    metrics_token: str = ""

    @property
    def auth_on(self) -> bool:
        return self.auth == "on"

    @property
    def origins(self) -> frozenset[str]:
        return frozenset(origin.strip().rstrip("/") for origin in self.allowed_origins.split(",")
                         if origin.strip())

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
        for name, allowed in CHOICES.items():
            value = getattr(settings, name)
            if value not in allowed:
                raise ValueError(f"NOTES_{name.upper()}={value!r} is not one of "
                                 + ", ".join(allowed))
        for name, least in MINIMUMS.items():
            value = getattr(settings, name)
            if value < least:
                raise ValueError(f"NOTES_{name.upper()}={value!r} must be at least {least}")
        return settings


DURABILITY = ("log", "debounce")
CHOICES = {"durability": DURABILITY, "auth": ("on", "off"), "signup": ("open", "closed"),
           "log_format": ("text", "json")}
MINIMUMS = {"backlog": 1, "max_open_notes": 0, "ws_rate": 0, "ws_burst": 1, "rest_write_rate": 0,
            "rest_write_burst": 1, "ws_per_note": 0, "ws_per_user": 0, "ws_per_address": 0}


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
