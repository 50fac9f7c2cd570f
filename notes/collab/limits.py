"""Limits on what one client may send: a token bucket per socket (``now`` passed in, or
``time.monotonic``).

A socket's messages (a JSON client's every frame; a Yjs client's updates and awareness updates
that change something) draw on ``RateLimit``: ``rate`` a second, in bursts of up to ``burst``.
Past it a message is refused (it changes nothing). The refused ones draw on an allowance of their
own, as large and refilling as fast; a client that exhausts that too, one that keeps sending at
more than twice the rate, is cut off (close 1008). A typist, or a client that sends a burst now
and then, never gets near it.
"""

from __future__ import annotations

import enum
import time

CLOSE_POLICY_VIOLATION = 1008  # the websocket close code for a client past its rate limit
EPSILON = 1e-9  # (a client exactly at the rate must not lose a token to rounding)


class TokenBucket:
    """``rate`` tokens a second, holding at most ``burst``; full at the start."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, now: float | None = None) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = time.monotonic() if now is None else now

    def take(self, now: float | None = None) -> bool:
        """Take one token if there is one (refilled up to ``now`` first)."""
        if self.peek(now):
            self.tokens -= 1
            return True
        return False

    def peek(self, now: float | None = None) -> bool:
        """Is there a token (refilled up to ``now``)? None is taken."""
        now = time.monotonic() if now is None else now
        if now > self.stamp:  # (a clock that went back refills nothing)
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        return self.tokens >= 1 - EPSILON


class Verdict(enum.Enum):
    ADMIT = "admit"  # handle the message
    REFUSE = "refuse"  # drop it (changes nothing), tell the client if its protocol can
    CLOSE = "close"  # drop it and close the socket with CLOSE_POLICY_VIOLATION


class RateLimit:
    """One socket's allowance of messages (see the module's docstring)."""

    __slots__ = ("admitted", "refused")

    def __init__(self, rate: float, burst: float, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.admitted = TokenBucket(rate, burst, now)
        self.refused = TokenBucket(rate, burst, now)

    def check(self, now: float | None = None) -> Verdict:
        """The verdict on one more message arriving at ``now``."""
        now = time.monotonic() if now is None else now
        if self.admitted.take(now):
            return Verdict.ADMIT
        return self.refuse(now)

    def allows(self, now: float | None = None) -> bool:
        """Would one more message be admitted? Nothing is counted: ``charge`` it once it turns
        out to count (a Yjs update that changes nothing, say an echo, does not)."""
        return self.admitted.peek(now)

    def charge(self, now: float | None = None) -> None:
        """Count one admitted message (after ``allows``)."""
        self.admitted.take(now)

    def refuse(self, now: float | None = None) -> Verdict:
        """Count one refused message: REFUSE, or CLOSE once the refusals are used up too."""
        return Verdict.REFUSE if self.refused.take(now) else Verdict.CLOSE


def rate_limit(rate: float, burst: float) -> RateLimit | None:
    """A new socket's limit; None when ``rate`` is 0 (no limit)."""
    return RateLimit(rate, burst) if rate > 0 else None


__all__ = ["CLOSE_POLICY_VIOLATION", "RateLimit", "TokenBucket", "Verdict", "rate_limit"]
