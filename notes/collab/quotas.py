"""How much one client may take of a process: write requests a second (``RequestRate``, a
token bucket per key) and sockets open at once (``SocketQuota``, per note, user and address).
Both in memory, per process; ``now`` passed in, or ``time.monotonic``.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field

from notes.collab.limits import TokenBucket

CLOSE_TRY_LATER = 1013  # the websocket close code for "too many sockets": try again later
MAX_KEYS = 100_000  # buckets kept at most (beyond, the least recently used is forgotten)


class RequestRate:
    """``rate`` requests a second per key, in bursts of up to ``burst``.

    A bucket idle long enough to be full again is the same as a new one, so it is forgotten:
    memory holds only the keys seen within the last ``burst / rate`` seconds (and at most
    ``max_keys`` of them; forgetting an older one early only gives it a fresh burst).
    """

    def __init__(self, rate: float, burst: float, max_keys: int = MAX_KEYS) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self.refill = burst / rate  # seconds from empty to full
        self._buckets: OrderedDict[Hashable, TokenBucket] = OrderedDict()  # least recent first

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: Hashable, now: float | None = None) -> int:
        """0 if ``key`` may make one more request (it is counted), else the whole seconds to
        wait before it may (nothing is counted)."""
        now = time.monotonic() if now is None else now
        self._forget_full(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        if bucket.take(now):
            return 0
        return max(1, math.ceil((1 - bucket.tokens) / self.rate))

    def _forget_full(self, now: float) -> None:
        buckets = self._buckets
        while buckets:
            oldest = next(iter(buckets.values()))
            if oldest.stamp + self.refill > now:
                return
            buckets.popitem(last=False)


def request_rate(rate: float, burst: float) -> RequestRate | None:
    """None when ``rate`` is 0 (no limit)."""
    return RequestRate(rate, burst) if rate > 0 else None


class TooManySockets(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SocketSlot:
    """What one socket holds of the quota (``SocketQuota.release`` gives it back)."""

    keys: tuple[tuple[str, Hashable], ...]


@dataclass
class SocketQuota:
    """At most ``per_note`` sockets on one note, ``per_user`` of one user and ``per_address``
    from one client address (0: no limit of that kind). Counts only what is open: a key whose
    count falls to 0 is dropped."""

    per_note: int = 500
    per_user: int = 100
    per_address: int = 200
    _open: dict[tuple[str, Hashable], int] = field(default_factory=dict)

    REASONS = {"note": "too many sockets on this note", "user": "too many sockets of this user",
               "address": "too many sockets from this address"}

    def claim(self, note: Hashable, user: Hashable | None, address: Hashable) -> SocketSlot:
        """A slot for one more socket, or ``TooManySockets`` (nothing is counted then)."""
        wanted = [(kind, key, limit) for kind, key, limit in (
            ("note", note, self.per_note), ("user", user, self.per_user),
            ("address", address, self.per_address)) if limit > 0 and key is not None]
        for kind, key, limit in wanted:
            if self._open.get((kind, key), 0) >= limit:
                raise TooManySockets(self.REASONS[kind])
        keys = tuple((kind, key) for kind, key, _ in wanted)
        for counted in keys:
            self._open[counted] = self._open.get(counted, 0) + 1
        return SocketSlot(keys)

    def release(self, slot: SocketSlot) -> None:
        for counted in slot.keys:
            left = self._open.get(counted, 0) - 1
            if left > 0:
                self._open[counted] = left
            else:
                self._open.pop(counted, None)

    def count(self, kind: str, key: Hashable) -> int:
        return self._open.get((kind, key), 0)


__all__ = ["CLOSE_TRY_LATER", "RequestRate", "SocketQuota", "SocketSlot", "TooManySockets",
           "request_rate"]
