"""Client roles shared by the scenarios, all on :class:`bench.wsclient.WsClient`.

Latency stamps travel inside the inserted text as tokens ``[A.S.T]``: author A, sequence S, and
T = ``time.time_ns()`` when the keystroke was made. A receiver finds them in the raw frame with one
regex and subtracts T from the time the frame's bytes arrived, so the latency covers the sender's
buffering, the server, and the receiver's socket, but not the receiver's JSON parsing.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import re
import time
from array import array
from collections import Counter
from pathlib import Path

from bench.wsclient import WsClient
from notes.collab.delta import apply_delta

TOKEN = re.compile(rb"\[(\d+)\.(\d+)\.(\d+)\]")
TOKEN_STR = re.compile(r"\[(\d+)\.(\d+)\.(\d+)\]")
ROOT = Path(__file__).resolve().parent.parent
TRACE = ROOT.parent / "shared" / "data" / "automerge-paper.json.gz"


def token(author: int, seq: int) -> str:
    return f"[{author}.{seq}.{time.time_ns()}]"


def sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def edit_delta(pos: int, ndel: int, ins: str) -> list:
    ops: list = [{"retain": pos}] if pos else []
    if ndel:
        ops.append({"delete": ndel})
    if ins:
        ops.append({"insert": ins})
    return ops


def load_trace(limit: int | None = None) -> tuple[list[tuple[int, int, str]], str, str]:
    """The trace's keystrokes as (pos, deleted, inserted), its start and end text.

    With ``limit`` only the first ``limit`` keystrokes are kept and the end text is computed.
    """
    with gzip.open(TRACE, "rt", encoding="utf-8") as f:
        data = json.load(f)
    strokes = [(p[0], p[1], p[2]) for txn in data["txns"] for p in txn["patches"]]
    start, end = data["startContent"], data["endContent"]
    if limit is not None and limit < len(strokes):
        strokes = strokes[:limit]
        end = start
        for pos, ndel, ins in strokes:
            end = end[:pos] + ins + end[pos + ndel:]
    return strokes, start, end


class Follower:
    """A read-only member of a note: keeps the text in step and times the tokens it receives.

    With ``defer`` the edit frames are only stored (cheap while the run lasts) and applied by
    :meth:`finish`.
    """

    def __init__(self, record: bool = True, defer: bool = False):
        self.record = record
        self.defer = defer
        self.text: str | None = None
        self.hello_rev: int | None = None
        self.rev = -1
        self.edits = 0
        self.gaps = 0
        self.lat = array("q")
        self.stored: list[tuple[bytes, int]] = []
        self.kinds: Counter = Counter()
        self.ws: WsClient | None = None
        self.join_ns = 0

    async def open(self, port: int, path: str) -> Follower:
        t0 = time.time_ns()
        self.ws = await WsClient.connect(port, path, self.on_message)
        payload, t1 = await asyncio.wait_for(asyncio.shield(self.ws.first), 60)
        self.join_ns = t1 - t0
        return self

    def on_message(self, payload: bytes, now: int) -> None:
        if self.defer and self.text is not None and payload.startswith(b'{"type":"edit"'):
            self.stored.append((payload, now))
            self.edits += 1
            return
        msg = json.loads(payload)
        kind = msg["type"]
        self.kinds[kind] += 1
        if kind == "edit":
            self.edits += 1
            if msg["rev"] != self.rev + 1:
                self.gaps += 1
            self.rev = msg["rev"]
            self.text = apply_delta(self.text, msg["delta"])
            if self.record:
                for m in TOKEN.finditer(payload):
                    self.lat.append(now - int(m.group(3)))
        elif kind == "hello":
            self.text = msg["content"]
            self.rev = self.hello_rev = msg["rev"]

    def finish(self) -> None:
        """Apply the stored frames (``defer``)."""
        for payload, _ in self.stored:
            msg = json.loads(payload)
            self.kinds["edit"] += 1
            if msg["rev"] != self.rev + 1:
                self.gaps += 1
            self.rev = msg["rev"]
            self.text = apply_delta(self.text, msg["delta"])

    def arrivals(self) -> list[tuple[int, int]]:
        """(rev, arrival ns) of the stored frames (``defer``), rev read without a full parse."""
        out = []
        for payload, now in self.stored:
            i = payload.index(b'"rev":') + 6
            j = payload.index(b",", i)
            out.append((int(payload[i:j]), now))
        return out

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code if self.ws else None

    @property
    def open_now(self) -> bool:
        return self.ws is not None and self.ws.is_open


async def open_many(count: int, opener, concurrency: int = 32) -> tuple[list, list[str]]:
    """Run ``opener(i)`` for i < count with bounded concurrency; (results in order, errors)."""
    sem = asyncio.Semaphore(concurrency)
    errors: list[str] = []

    async def one(i):
        async with sem:
            try:
                return await opener(i)
            except Exception as error:  # noqa: BLE001 - counted and reported
                errors.append(f"{type(error).__name__}: {error}")
                return None

    results = await asyncio.gather(*(one(i) for i in range(count)))
    return list(results), errors


async def wait_until(predicate, timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(interval)
    return True
