"""``GET /metrics``: what this process does, in the Prometheus text format.

Off unless ``NOTES_METRICS_TOKEN`` is set (the route does not exist: 404); the scraper sends
``Authorization: Bearer TOKEN`` (401 otherwise). HTTP requests are counted by a request/response
middleware pair, by route pattern (not the raw path: bounded cardinality). Everything else is
read at scrape time from the counters the hub, its saver and journal, and the socket outbox keep
anyway (``NotesCollector``): the hot paths carry no metrics code of their own.

With ``notes serve --workers N`` (N > 1) the numbers are every worker's added up: the main
process makes a folder for prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``,
unless that names one already) before it starts the workers; each worker writes its HTTP metrics
there and copies the core's counters there (``SharedMirror``). See docs/operations.md.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from functools import partial
from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from sanic import Blueprint, Request, Sanic
from sanic.response import HTTPResponse, raw

from notes.collab.hub import Hub
from notes.http import live
from notes.http.openapi_docs import openapi
from notes.http.problems import Problem

log = logging.getLogger(__name__)

bp = Blueprint("metrics")

UNMATCHED = "(unmatched)"  # the route label of a request no route matched (404, 405)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0)
PROTOCOLS = ("json", "yjs")
EDIT_SOURCES = ("json", "yjs", "rest", "remote")
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
MIRROR_TASK = "notes.metrics"
SYNC_INTERVAL = 1.0  # seconds between two copies of a worker's counters (multiprocess mode)


class HttpMetrics:
    """Requests by route, method and status, and their latency (until the response is handed
    to Sanic: for a streamed export, the first bytes)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.requests = Counter("notes_http_requests", "HTTP requests answered",
                                ["route", "method", "status"], registry=registry)
        self.latency = Histogram("notes_http_request_duration_seconds",
                                 "Time to answer an HTTP request", ["route", "method"],
                                 buckets=LATENCY_BUCKETS, registry=registry)
        self._children: dict[tuple[str, str, int], tuple] = {}  # the labelled series, cached

    async def started(self, request: Request) -> None:
        request.ctx.metrics_start = time.perf_counter()

    async def answered(self, request: Request, response: HTTPResponse) -> None:
        start = getattr(request.ctx, "metrics_start", None)
        route = request.route
        key = (UNMATCHED if route is None else route.uri,
               request.method if request.method in METHODS else "other", response.status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(key[0], key[1], str(key[2])),
                self.latency.labels(key[0], key[1]))
        children[0].inc()
        if start is not None:
            children[1].observe(time.perf_counter() - start)


class Reading(NamedTuple):
    """One metric of the core's counters: a number, or numbers by the one ``label``."""

    name: str
    kind: str  # "counter" or "gauge"
    documentation: str
    value: float | dict[str, float]
    label: str | None = None


def readings(hub: Hub) -> list[Reading]:
    """What the hub, its saver and journal, and the socket outbox have counted so far."""
    sockets = dict.fromkeys(PROTOCOLS, 0)
    for room in list(hub.rooms.values()):
        for member in room.members.values():
            protocol = getattr(member.codec, "protocol", "other")
            sockets[protocol] = sockets.get(protocol, 0) + 1
    outbox, saver, journal = live.OUTBOX, hub.saver, hub.journal
    found = [
        Reading("notes_open_notes", "gauge", "Notes loaded (rooms in the hub)", len(hub.rooms)),
        Reading("notes_sockets", "gauge", "Websockets joined to a note, by protocol", sockets,
                "protocol"),
        Reading("notes_edits_applied", "counter",
                "Changes applied to open notes, by source (remote: stored by another process)",
                {**dict.fromkeys(EDIT_SOURCES, 0), **hub.edits}, "source"),
        Reading("notes_frames_sent", "counter", "Websocket frames sent", outbox.frames),
        Reading("notes_socket_writes", "counter", "Transport writes the frames took (batched)",
                outbox.writes),
        Reading("notes_slow_readers_closed", "counter",
                "Sockets closed with 1013: their outgoing queue was full", outbox.slow_readers),
        Reading("notes_socket_closes", "counter",
                "Sockets ended, by the close code sent (4401/4403: credentials refused, 1008: "
                "rate limit, 1013: slow reader or too many sockets)",
                {str(code): count for code, count in sorted(outbox.closes.items())}, "code"),
        Reading("notes_saves", "counter", "Snapshots written (compactions of the log)",
                saver.saves),
        Reading("notes_save_seconds", "counter", "Time the saves took, together",
                saver.save_seconds),
        Reading("notes_save_failures", "counter",
                "Saves that failed (each is retried with backoff)", saver.save_failures),
    ]
    if journal is not None:
        found += [
            Reading("notes_log_commits", "counter", "Update-log commits (group commit)",
                    journal.commits),
            Reading("notes_log_entries", "counter", "Updates those commits held",
                    journal.written),
            Reading("notes_log_pending", "gauge", "Updates waiting for their commit",
                    journal.pending),
            Reading("notes_process_messages", "counter",
                    "Messages between processes (updates, deletions, access changes), by "
                    "direction", {"sent": hub.messages_sent, "received": hub.messages_received},
                    "direction"),
            Reading("notes_catch_ups", "counter",
                    "Open notes caught up from the log after a missed update", hub.catch_ups),
            Reading("notes_listen_reconnects", "counter", "Reconnections of the LISTEN "
                    "connection", getattr(hub.fanout, "reconnects", 0)),
        ]
    return found


class NotesCollector(Collector):
    """One process: the core's counters, read at scrape time."""

    def __init__(self, app: Sanic) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        hub = getattr(self.app.ctx, "hub", None)
        if hub is None:  # (not started yet)
            return
        for reading in readings(hub):
            kind = CounterMetricFamily if reading.kind == "counter" else GaugeMetricFamily
            if reading.label is None:
                yield kind(reading.name, reading.documentation, value=reading.value)
                continue
            family = kind(reading.name, reading.documentation, labels=[reading.label])
            for label_value, value in reading.value.items():
                family.add_metric([label_value], value)
            yield family


class SharedMirror:
    """Several workers (prometheus-client's multiprocess mode): each worker copies the core's
    counters into its files every ``SYNC_INTERVAL`` seconds and before it answers a scrape; a
    scrape adds the workers up (gauges: the live workers')."""

    def __init__(self) -> None:
        self._metrics: dict[str, Counter | Gauge] = {}
        self._copied: dict[tuple[str, str | None], float] = {}

    def sync(self, hub: Hub) -> None:
        for reading in readings(hub):
            metric = self._metrics.get(reading.name)
            labels = [] if reading.label is None else [reading.label]
            if metric is None:
                metric = self._metrics[reading.name] = (
                    Counter(reading.name, reading.documentation, labels, registry=None)
                    if reading.kind == "counter" else
                    Gauge(reading.name, reading.documentation, labels, registry=None,
                          multiprocess_mode="livesum"))
            values = {None: reading.value} if reading.label is None else reading.value
            for label_value, value in values.items():
                series = metric if label_value is None else metric.labels(label_value)
                if reading.kind == "gauge":
                    series.set(value)
                    continue
                key = (reading.name, label_value)
                copied = self._copied.get(key, 0)
                if value > copied:
                    series.inc(value - copied)
                    self._copied[key] = value

    async def run(self, app: Sanic) -> None:
        while True:
            hub = getattr(app.ctx, "hub", None)
            try:
                if hub is not None:
                    self.sync(hub)
            except Exception:  # (a scrape shows stale numbers rather than none)
                log.exception("copying the metrics to the multiprocess folder failed")
            await asyncio.sleep(SYNC_INTERVAL)


def unauthorized() -> Problem:
    return Problem(401, "Send `Authorization: Bearer NOTES_METRICS_TOKEN`.", kind="unauthorized",
                   headers={"WWW-Authenticate": 'Bearer realm="metrics"'})


@bp.get("/metrics", ctx_public=True)  # (its own token, not an account's: see ``scrape``)
@openapi.exclude()
async def scrape(request: Request) -> HTTPResponse:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    expected = request.app.ctx.settings.metrics_token.encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
        raise unauthorized()
    mirror = request.app.ctx.metrics_mirror
    if mirror is not None and getattr(request.app.ctx, "hub", None) is not None:
        mirror.sync(request.app.ctx.hub)  # (this worker's numbers up to date, at least)
    return raw(generate_latest(request.app.ctx.metrics), content_type=CONTENT_TYPE_LATEST)


def setup_metrics(app: Sanic) -> None:
    """``GET /metrics`` and the HTTP middleware, when ``NOTES_METRICS_TOKEN`` is set. Call it
    before the other request middleware, so that their time is counted too."""
    if not app.ctx.settings.metrics_token:
        return
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROCESS_DIR):  # (set before prometheus_client was imported)
        MultiProcessCollector(registry)
        http = HttpMetrics(None)  # (written to this worker's files)
        mirror = app.ctx.metrics_mirror = SharedMirror()
        app.after_server_start(partial(_start_copying, mirror))
        app.after_server_stop(partial(_last_copy, mirror))
    else:
        http = HttpMetrics(registry)
        registry.register(NotesCollector(app))
        ProcessCollector(registry=registry)  # memory, CPU, open files
        app.ctx.metrics_mirror = None
    app.ctx.metrics = registry
    app.on_request(http.started)
    app.on_response(http.answered)
    app.blueprint(bp)
    app.main_process_start(_share_between_workers)
    app.main_process_stop(_stop_sharing)


def _start_copying(mirror: SharedMirror, app: Sanic) -> None:
    app.add_task(mirror.run(app), name=MIRROR_TASK)  # (not awaited: it runs till the end)


async def _last_copy(mirror: SharedMirror, app: Sanic) -> None:
    """A stopping worker: its last counts copied; its gauges no longer count."""
    if getattr(app.ctx, "hub", None) is not None:
        mirror.sync(app.ctx.hub)
    mark_process_dead(os.getpid())


async def _share_between_workers(app: Sanic) -> None:
    """The main process of ``--workers N`` (N > 1): a folder for multiprocess mode, unless
    ``PROMETHEUS_MULTIPROC_DIR`` names one; the workers, started after this, inherit it."""
    if app.state.workers > 1 and not os.environ.get(MULTIPROCESS_DIR):
        app.ctx.metrics_dir = os.environ[MULTIPROCESS_DIR] = tempfile.mkdtemp(
            prefix="notes-metrics-")


async def _stop_sharing(app: Sanic) -> None:
    made = getattr(app.ctx, "metrics_dir", None)
    if made is not None:
        shutil.rmtree(made, ignore_errors=True)
        os.environ.pop(MULTIPROCESS_DIR, None)


__all__ = ["setup_metrics"]
