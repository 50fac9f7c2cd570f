"""Group commit: every local change goes to the update log, many changes a commit.

The journal queues each change's Yjs update (for any note) and one writer commits the queue in
one transaction; whatever arrives while a commit is in flight joins the next one. A change's
future resolves once its commit is done: that is when its author is told (an ``ack`` means
stored). A failed commit keeps its entries, in order, at the head of the queue and is tried
again; nothing is dropped (but the changes of a note deleted meanwhile, which the store leaves
out).

The queue lives on the journal, not in the writer task, so ``drain`` still commits it after the
task was cancelled (Sanic cancels named tasks before ``before_server_stop``).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from notes.collab.text import text_problem

log = logging.getLogger(__name__)

MAX_BATCH = 2000  # entries in one commit
MAX_REF = 200  # characters of a ref kept in the log (longer ones are not looked up later)


@dataclass(frozen=True)
class LogEntry:
    """One change of one note: its Yjs update and the client's ref for it (if any)."""

    note_id: uuid.UUID
    update: bytes
    ref: str | None = None


def loggable_ref(ref: object) -> str | None:
    """The ref as stored with its update: strings only, not too long to look up, and text
    PostgreSQL can hold (a NUL or a lone surrogate would fail the whole batch's commit)."""
    if isinstance(ref, str) and len(ref) <= MAX_REF and text_problem(ref) is None:
        return ref
    return None


Append = Callable[[Sequence[LogEntry]], Awaitable[object]]


class Journal:
    """``write`` queues an entry; ``run`` commits the queue, a batch at a time, through ``append``.

    ``durable`` False (``NOTES_DURABILITY=debounce``): entries are still published to the other
    processes in batches, but nobody waits for them (``write`` returns None).
    """

    def __init__(self, append: Append, *, durable: bool = True, retry_initial: float = 0.05,
                 retry_max: float = 5.0, max_batch: int = MAX_BATCH):
        self.append = append
        self.durable = durable
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.max_batch = max_batch
        self._queue: list[tuple[LogEntry, asyncio.Future[None]]] = []
        self._wakeup = asyncio.Event()
        self._commit_lock = asyncio.Lock()
        self._inflight: asyncio.Future[None] | None = None
        self.commits = 0  # successful commits
        self.written = 0  # entries they held

    def write(self, entry: LogEntry) -> asyncio.Future[None] | None:
        """Queue ``entry``; the future resolves once it is committed (None: not durable)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((entry, future))
        self._wakeup.set()
        return future if self.durable else None

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def run(self) -> None:
        """The writer: commit whatever is queued, again and again; retry failures with backoff."""
        delay = self.retry_initial
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            try:
                await self._commit_next()
                delay = self.retry_initial
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("writing %d updates to the log failed; retrying in %.2fs",
                              len(self._queue), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max)

    async def drain(self, attempts: int = 3) -> int:
        """Commit everything queued now (shutdown). Returns how many entries stay unwritten."""
        for attempt in range(attempts):
            try:
                while self._queue:
                    await self._commit_next()
                return 0
            except Exception:
                log.exception("writing the log at shutdown failed (attempt %d)", attempt + 1)
                await asyncio.sleep(0.2 * (attempt + 1))
        return len(self._queue)

    async def _commit_next(self) -> None:
        """Commit the next batch. A commit, once begun, runs to its end even if the caller is
        cancelled (a transaction cut off mid-way would leave its connection unusable)."""
        async with self._commit_lock:
            if self._inflight is not None and not self._inflight.done():
                await self._finish_inflight()  # left running by a cancelled caller
            batch = self._queue[: self.max_batch]
            if not batch:
                return
            del self._queue[: len(batch)]
            self._inflight = asyncio.ensure_future(self._commit(batch))
            await self._finish_inflight()

    async def _finish_inflight(self) -> None:
        assert self._inflight is not None
        try:
            await asyncio.shield(self._inflight)
        finally:
            if self._inflight.done():
                self._inflight = None

    async def _commit(self, batch: list[tuple[LogEntry, asyncio.Future[None]]]) -> None:
        try:
            await self.append([entry for entry, _ in batch])
        except BaseException:
            self._queue[:0] = batch  # in order, ahead of what came since
            raise
        self.commits += 1
        self.written += len(batch)
        for _, future in batch:
            if not future.done():
                future.set_result(None)
