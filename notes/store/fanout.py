"""The PostgreSQL fan-out: updates travel between processes by LISTEN/NOTIFY.

Publishing writes the updates to the log and sends one notification each in the same
transaction, so a notification goes out exactly when its update is stored (at commit, in commit
order). A notification carries the update when it fits under PostgreSQL's 8000-byte payload
limit, else only the log row's id. Listening takes a dedicated connection (not one from the
pool); when it drops, the listener reconnects and the hub catches up from the log.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import uuid
from collections.abc import Sequence

import asyncpg

from notes.collab.access import AccessChanged, Role
from notes.collab.fanout import Published, Receive, Reconnected
from notes.collab.journal import LogEntry
from notes.store.database import asyncpg_dsn
from notes.store.queries import CARRIED_UPDATE, NoteStore

log = logging.getLogger(__name__)

CHANNEL = "notes_updates"


def encode_payload(origin: str, entry: LogEntry) -> str:
    """A notification carrying the update (up to ``CARRIED_UPDATE`` bytes), not stored: the
    same fields as the ones the log's statement makes (``notes.store.queries._APPEND``)."""
    return json.dumps({"o": origin, "n": str(entry.note_id), "i": None, "r": entry.ref,
                       "u": base64.b64encode(entry.update).decode()}, separators=(",", ":"))


def encode_access(origin: str, change: AccessChanged) -> str:
    return json.dumps({
        "o": origin, "a": True,
        "c": _text(change.credential_id), "n": _text(change.note_id),
        "u": _text(change.user_id), "r": None if change.role is None else change.role.value,
    }, separators=(",", ":"))


def _text(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


def _uuid(value: str | None) -> uuid.UUID | None:
    return None if value is None else uuid.UUID(value)


def decode_payload(payload: str) -> tuple[str, Published | AccessChanged]:
    """(the publishing process, the message)."""
    message = json.loads(payload)
    if message.get("a"):
        role = message.get("r")
        return message["o"], AccessChanged(
            credential_id=_uuid(message.get("c")), note_id=_uuid(message.get("n")),
            user_id=_uuid(message.get("u")), role=None if role is None else Role(role))
    if message.get("d"):
        return message["o"], Published(message["o"], uuid.UUID(message["n"]), deleted=True)
    update = message.get("u")
    return message["o"], Published(message["o"], uuid.UUID(message["n"]),
                                   None if update is None else base64.b64decode(update),
                                   message.get("i"), message.get("r"))


class PostgresFanout:
    def __init__(self, store: NoteStore, database_url: str, *, retry_max: float = 5.0):
        self.store = store
        self.dsn = asyncpg_dsn(database_url)
        self.origin = uuid.uuid4().hex[:12]
        self.retry_max = retry_max
        self._receive: Receive | None = None
        self._reconnected: Reconnected | None = None
        self._connection: asyncpg.Connection | None = None
        self._keeper: asyncio.Task | None = None
        self._lost = asyncio.Event()
        self.reconnects = 0

    # --- publishing ---------------------------------------------------------------------------

    async def publish(self, entries: Sequence[LogEntry], *, durable: bool) -> None:
        if durable or any(len(entry.update) > CARRIED_UPDATE for entry in entries):
            # (the notifications are made by the same statement: see NoteStore.append_updates)
            await self.store.append_updates(entries, announce=(CHANNEL, self.origin))
        else:  # nothing to store: the notifications carry the updates
            await self.store.notify(CHANNEL, [encode_payload(self.origin, entry)
                                              for entry in entries])

    async def publish_deleted(self, note_id: uuid.UUID) -> None:
        payload = json.dumps({"o": self.origin, "n": str(note_id), "d": True})
        await self.store.notify(CHANNEL, [payload])

    async def publish_access(self, change: AccessChanged) -> None:
        await self.store.notify(CHANNEL, [encode_access(self.origin, change)])

    # --- listening ----------------------------------------------------------------------------

    async def start(self, receive: Receive, reconnected: Reconnected) -> None:
        """Listen (the first connection is made before this returns), and keep listening."""
        self._receive, self._reconnected = receive, reconnected
        await self._listen()
        self._keeper = asyncio.create_task(self._keep_listening())

    async def _listen(self) -> None:
        connection = await asyncpg.connect(self.dsn, server_settings={
            "application_name": f"notes-listen {os.getpid()}"})
        self._lost.clear()
        connection.add_termination_listener(lambda _connection: self._lost.set())
        await connection.add_listener(CHANNEL, self._on_notification)
        self._connection = connection

    def _on_notification(self, _connection, _pid, _channel, payload: str) -> None:
        try:
            origin, message = decode_payload(payload)
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed notification on %s", CHANNEL)
            return
        if origin != self.origin and self._receive is not None:
            self._receive(message)

    async def _keep_listening(self) -> None:
        while True:
            await self._lost.wait()
            log.warning("the listening connection to PostgreSQL dropped; reconnecting")
            delay = 0.05
            while True:
                try:
                    await self._listen()
                    break
                except (OSError, asyncpg.PostgresError) as error:
                    log.warning("listening again failed (%s); retrying in %.2fs", error, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.retry_max)
            self.reconnects += 1
            if self._reconnected is not None:
                await self._reconnected()

    async def stop(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
            self._keeper = None
        if self._connection is not None:
            try:
                await asyncio.wait_for(self._connection.close(), timeout=2)
            except Exception:  # already gone
                self._connection.terminate()
            self._connection = None
