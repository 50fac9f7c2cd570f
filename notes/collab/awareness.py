"""Yjs awareness on the server: the latest state of every client, relayed, never interpreted.

An awareness update is ``varUint(n)`` then, n times, ``varUint(clientID) varUint(clock)
varString(JSON state)`` (the state ``null`` means the client left). A state replaces the one held
when its clock is newer (or equal, for a removal). The server remembers which connection sent
each client's state (its *owner*) so it can remove them when that connection closes, and drops
states nobody renewed for ``timeout`` seconds (y-protocols' outdated timeout, 30 s); clients renew
theirs every 15 s. Expiry happens when awareness traffic arrives and before a newcomer is told the
states, so nobody is told of a state that has expired.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from notes.collab.json_input import BadJson, check_depth, parse_json
from notes.collab.lib0 import DecodeError, Reader, write_string, write_uint

OUTDATED_TIMEOUT = 30.0
MAX_CLIENTS_PER_OWNER = 8  # a y-websocket provider has one; a few more leave room for tabs


class BadAwareness(ValueError):
    pass


@dataclass
class Entry:
    clock: int
    state: object  # the parsed JSON state; None once removed (the clock is still needed)
    state_json: str
    owner: str
    renewed: float


class Awareness:
    def __init__(self, timeout: float = OUTDATED_TIMEOUT,
                 clock: Callable[[], float] = time.monotonic):
        self.timeout = timeout
        self.clock = clock
        self.entries: dict[int, Entry] = {}

    def apply(self, update: bytes, owner: str) -> bytes | None:
        """Apply an update sent by ``owner``; return the update of what changed (or None).

        Refused whole (``BadAwareness``, nothing changed) when it does not decode.
        """
        parsed = _decode(update)
        now = self.clock()
        owned = sum(1 for e in self.entries.values() if e.owner == owner and e.state is not None)
        changed: list[int] = []
        for client_id, clock, state_json, state in parsed:
            entry = self.entries.get(client_id)
            if entry is not None and not (
                clock > entry.clock or (clock == entry.clock and state is None
                                        and entry.state is not None)):
                continue
            if state is not None and (entry is None or entry.owner != owner
                                      or entry.state is None):
                if owned >= MAX_CLIENTS_PER_OWNER:
                    raise BadAwareness(f"more than {MAX_CLIENTS_PER_OWNER} awareness clients")
                owned += 1
            self.entries[client_id] = Entry(clock, state, state_json, owner, now)
            changed.append(client_id)
        return self.encode(changed) if changed else None

    def remove_owner(self, owner: str) -> bytes | None:
        """Remove every state ``owner`` sent (its connection closed); the removal update."""
        return self._remove([cid for cid, e in self.entries.items() if e.owner == owner])

    def expire(self) -> bytes | None:
        """Remove the states nobody renewed for ``timeout`` seconds; the removal update."""
        limit = self.clock() - self.timeout
        return self._remove([cid for cid, e in self.entries.items() if e.renewed <= limit])

    def encode_all(self) -> bytes | None:
        live = [cid for cid, e in self.entries.items() if e.state is not None]
        return self.encode(live) if live else None

    def name_of(self, owner: str) -> str | None:
        """The ``user.name`` of a state ``owner`` sent, if any (what JSON clients see)."""
        for entry in self.entries.values():
            if entry.owner == owner and isinstance(entry.state, dict):
                user = entry.state.get("user")
                if isinstance(user, dict) and isinstance(user.get("name"), str):
                    return user["name"][:100] or None
        return None

    def encode(self, client_ids: list[int]) -> bytes:
        parts = [write_uint(len(client_ids))]
        for cid in client_ids:
            entry = self.entries[cid]
            parts += [write_uint(cid), write_uint(entry.clock), write_string(entry.state_json)]
        return b"".join(parts)

    def _remove(self, client_ids: list[int]) -> bytes | None:
        removed = []
        for cid in client_ids:
            entry = self.entries[cid]
            if entry.state is not None:
                entry.clock += 1
                entry.state, entry.state_json = None, "null"
                removed.append(cid)
        return self.encode(removed) if removed else None


def _decode(update: bytes) -> list[tuple[int, int, str, object]]:
    reader = Reader(update)
    try:
        count = reader.uint()
        items = []
        for _ in range(count):
            client_id, clock, state_json = reader.uint(), reader.uint(), reader.string()
            state = parse_json(state_json)
            check_depth(state)
            items.append((client_id, clock, state_json, state))
        reader.end()
    except (DecodeError, BadJson) as error:
        raise BadAwareness(f"undecodable awareness update: {error}") from None
    return items
