"""The application factory: ``create_app(settings)`` builds the app; nothing runs at import."""

from __future__ import annotations

import asyncio
import logging
import re

from sanic import HTTPResponse, Request, Sanic
from sanic.log import access_logger
from sanic_ext import Extend
from sanic_ext.extensions.http.extension import HTTPExtension
from sanic_ext.extensions.openapi.extension import OpenAPIExtension

from notes import __version__, history, logs
from notes.accounts import Accounts, LoginThrottle
from notes.collab.hub import Hub, HubLimits
from notes.config import Settings
from notes.http import auth, live, notes, shares, site
from notes.http import history as history_routes
from notes.http import transfer as transfer_routes
from notes.http.encoding import dumps
from notes.http.metrics import setup_metrics
from notes.http.openapi_docs import configure_docs, openapi
from notes.http.problems import handle_exception
from notes.http.site import STATIC_DIR
from notes.store.accounts import AccountStore
from notes.store.database import HotPool, make_engine
from notes.store.fanout import PostgresFanout
from notes.store.queries import NoteStore
from notes.store.transfer import TransferStore
from notes.use_cases import NoteLimits

log = logging.getLogger(__name__)

API_DESCRIPTION = """\
A collaborative notes server. Notes are plain text; several people edit one note at once over a
websocket (`ws://HOST/notes/{id}/live`, see the [live editing protocol](/docs/protocol)) while REST
clients read and write it here. Errors are `application/problem+json` (RFC 9457).
[Open the editor](/).
"""


TRASH_TASK = "notes.trash"


class SanicTasks:
    """The hub's named background tasks, run as Sanic tasks (``app.add_task``)."""

    def __init__(self, app: Sanic):
        self.app = app

    def start(self, name: str, coroutine) -> None:
        self.app.purge_tasks()
        self.app.add_task(logs.without_request(coroutine), name=name)

    async def cancel(self, name: str) -> None:
        task = self.app.get_task(name, raise_exception=False)
        if task is not None and task is not asyncio.current_task():
            await self.app.cancel_task(name, raise_exception=False)
        self.app.purge_tasks()


class RedactTokens(logging.Filter):
    """Keep credentials out of the access log: a socket's ``?token=`` is part of its URL."""

    SECRET = re.compile(r"(?<=[?&]token=)[^&\s]+")

    def filter(self, record: logging.LogRecord) -> bool:
        request = getattr(record, "request", None)
        if isinstance(request, str) and "token=" in request:
            record.request = self.SECRET.sub("REDACTED", request)
        return True


def create_app(settings: Settings, name: str = "notes") -> Sanic:
    if not settings.database_url:
        raise ValueError("create_app needs settings.database_url (the CLI starts the embedded one)")
    # (notes.logs installs the one log handler: Sanic's own would print every line again)
    logs.configure_logging(settings.log_format)
    app = Sanic(name, dumps=dumps,  # UTF-8 JSON (orjson), see notes.http.encoding
                configure_logging=False)
    app.ctx.settings = settings
    app.config.REQUEST_MAX_SIZE = settings.max_body
    app.config.REQUEST_TIMEOUT = settings.request_timeout
    app.config.KEEP_ALIVE_TIMEOUT = settings.keep_alive_timeout
    app.config.RESPONSE_TIMEOUT = settings.response_timeout
    app.config.WEBSOCKET_MAX_SIZE = settings.ws_max_size
    app.config.WEBSOCKET_PING_INTERVAL = settings.ws_ping_interval
    app.config.WEBSOCKET_PING_TIMEOUT = settings.ws_ping_timeout
    app.config.ACCESS_LOG = settings.access_log
    if not any(isinstance(f, RedactTokens) for f in access_logger.filters):
        access_logger.addFilter(RedactTokens())
    app.config.GRACEFUL_SHUTDOWN_TIMEOUT = 5.0
    app.config.FALLBACK_ERROR_FORMAT = "json"
    app.config.API_TITLE = "notes"
    app.config.API_VERSION = __version__
    app.config.API_DESCRIPTION = API_DESCRIPTION
    configure_docs(app)
    # Of sanic-ext: the OpenAPI document and the HTTP extension (automatic HEAD and OPTIONS).
    # Not its dependency injection nor CORS (unused here): each costs every request a signal
    # handler or a response middleware.
    app.config.CORS = False
    Extend(app, built_in_extensions=False, extensions=[OpenAPIExtension, HTTPExtension])
    app.error_handler.add(Exception, handle_exception)

    app.blueprint(auth.bp)
    app.blueprint(notes.bp)
    app.blueprint(shares.bp)
    app.blueprint(history_routes.bp)
    app.blueprint(transfer_routes.bp)
    app.blueprint(live.bp)
    openapi.exclude(bp=live.bp)  # a websocket, described in the protocol document instead
    app.blueprint(site.bp)
    app.static("/static", STATIC_DIR, name="static")

    app.on_request(_begin_request)
    setup_metrics(app)  # (before auth: its request middleware times the credentials check)
    app.on_request(auth.authenticate)
    app.on_response(_echo_request_id)
    app.before_server_start(_open_resources)
    app.before_server_stop(_flush_and_close)
    app.after_server_stop(_close_resources)
    return app


def _begin_request(request: Request) -> None:
    """The request's id (the client's ``X-Request-ID`` or a new one), for its log lines."""
    request.ctx.request_id = logs.request_id_of(request.headers.get(logs.REQUEST_ID_HEADER))
    logs.REQUEST_ID.set(request.ctx.request_id)


def _echo_request_id(request: Request, response: HTTPResponse) -> None:
    request_id = getattr(request.ctx, "request_id", None)
    if request_id is not None:
        response.headers[logs.REQUEST_ID_HEADER] = request_id


async def _open_resources(app: Sanic) -> None:
    settings: Settings = app.ctx.settings
    app.ctx.engine = make_engine(settings.database_url)
    # The reads every request makes (credential, role, note) run on asyncpg directly.
    app.ctx.hot = await HotPool(settings.database_url).open()
    app.ctx.store = NoteStore(app.ctx.engine, app.ctx.hot)
    app.ctx.account_store = AccountStore(app.ctx.engine, app.ctx.hot)
    app.ctx.transfers = TransferStore(app.ctx.engine)
    app.ctx.accounts = Accounts(
        app.ctx.account_store, session_days=settings.session_days,
        throttle=LoginThrottle(per_user=settings.login_attempts,
                               per_address=settings.login_address_attempts,
                               window=settings.login_window),
    )
    app.ctx.limits = NoteLimits(
        max_title=settings.max_title,
        max_content=settings.max_content,
        page_size=settings.page_size,
        max_page_size=settings.max_page_size,
    )
    app.ctx.hub = Hub(
        app.ctx.store,
        SanicTasks(app),
        HubLimits(
            history_limit=settings.history_limit,
            max_length=settings.max_content,
            max_title=settings.max_title,
            debounce=settings.save_debounce,
            max_wait=settings.save_max_wait,
            max_open_notes=settings.max_open_notes,
        ),
        fanout=PostgresFanout(app.ctx.store, settings.database_url),
        durable=settings.durability == "log",
    )
    await app.ctx.hub.start()
    app.add_task(history.purge_trash_forever(app.ctx.store, trash_days=settings.trash_days,
                                             interval=settings.trash_purge_interval),
                 name=TRASH_TASK)


async def _flush_and_close(app: Sanic) -> None:
    """Sanic has cancelled the save and journal tasks by now; the journal's queue and the dirty
    state are on the hub and its rooms, so write them."""
    unsaved = await app.ctx.hub.shutdown()
    if unsaved:
        log.error("%d notes could not be saved before shutdown", unsaved)


async def _close_resources(app: Sanic) -> None:
    await app.ctx.hot.close()
    await app.ctx.engine.dispose()


__all__ = ["create_app"]
