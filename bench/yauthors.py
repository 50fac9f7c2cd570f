"""A cheap but correct Yjs author for the authors sweep (issue 12): y-websocket protocol on
``/yjs/{note_id}``, typing the sweep's tokens ``[author.seq.time_ns]`` at one spot.

It keeps no Yjs document. At join it syncs as y-websocket does (it answers the server's step 1
with the items it has, sends its own step 1 with an empty state vector, and gets the whole
document in the server's step 2). The step 2 is decoded once with pycrdt to choose where to
type: in an empty ``content`` the author types at the start (no origins, the parent named);
otherwise at a random place, whose left and right origins pycrdt gives (a throw-away probe
insert, never sent). From then on every keystroke is one v1 update written by hand: one string
Item of this client (clientID, clock) whose left origin is the author's previous item (its last
character) and whose right origin stays the one of its first item, as a client that has not
applied anyone else's changes since it joined would write it. That is a valid Yjs client with a
stale view: Yjs' integration (YATA) places the item right after the author's own text whatever
was inserted meanwhile. It never applies the others' updates (it has no document to apply them
to), which is why it is cheap; it only times the tokens it finds in their raw frames (the
characters of an inserted string appear verbatim in a v1 update).

A later sync step 1 from the server is answered with every item this client made (one update,
its structs in clock order). Awareness from the server is ignored (the author sends none); a
y-protocols auth message (permission denied) counts as an error.
"""

from __future__ import annotations

import random
import time
from array import array
from collections import Counter

from bench.clients import TOKEN
from bench.ywire import SYNC_STEP2, TEXT_NAME, Wire, YjsSocket, open_synced
from notes.collab.lib0 import write_bytes, write_string, write_uint
from notes.collab.yupdate import ID, read_update, utf16_length

_STRING = 4
_ORIGIN, _RIGHT_ORIGIN = 0x80, 0x40
_UPDATE_PREFIX = b"\x00\x02"  # sync (0), update (2)
_EMPTY_DELETE_SET = b"\x00"
_PARENT = write_uint(1) + write_string(TEXT_NAME)  # a root type, by name


def string_struct(text: str, origin: ID | None, right: ID | None) -> bytes:
    """One string Item of a v1 update (without its client and clock, which head the update)."""
    info = _STRING | (_ORIGIN if origin else 0) | (_RIGHT_ORIGIN if right else 0)
    out = bytes((info,))
    if origin:
        out += write_uint(origin[0]) + write_uint(origin[1])
    if right:
        out += write_uint(right[0]) + write_uint(right[1])
    if not origin and not right:
        out += _PARENT
    return out + write_string(text)


def update_of(client: int, clock: int, structs: list[bytes]) -> bytes:
    """A v1 update of one client's consecutive structs from ``clock``, no deletions."""
    if not structs:
        return b"\x00\x00"
    return (write_uint(1) + write_uint(len(structs)) + write_uint(client) + write_uint(clock)
            + b"".join(structs) + _EMPTY_DELETE_SET)


def place(update: bytes, client: int, rng: random.Random) -> tuple[ID | None, ID | None, int]:
    """Where to type in the document of ``update`` (a sync step 2): (left origin, right origin,
    length of ``content`` in code points). Empty: the start, no origins."""
    from pycrdt import Doc, Text

    doc = Doc(client_id=client)
    doc.apply_update(update)
    text = doc.get(TEXT_NAME, type=Text)
    value = str(text)
    if not value:
        return None, None, 0
    pos = rng.randint(0, len(value))
    state = doc.get_state()
    text.insert(len(value[:pos].encode()), "x")  # a probe, never sent: only its origins
    probe = read_update(doc.get_update(state))
    return ((probe.origins or [None])[0], (probe.right_origins or [None])[0], len(value))


class YAuthor:
    """One Yjs author (see the module). ``lat`` holds the latency of the tokens received from
    JSON authors (even ids), ``lat_y`` of those from Yjs authors (odd ids)."""

    def __init__(self, aid: int, seed: int, path: str):
        self.aid = aid
        self.rng = random.Random(seed)
        self.client = self.rng.getrandbits(32)  # as Yjs picks a clientID
        self.wire = Wire(path)
        self.ws: YjsSocket | None = None
        self.synced = None
        self.error: str | None = None
        self.clock = 0
        self.origin: ID | None = None
        self.right: ID | None = None
        self.structs: list[bytes] = []
        self.seq = 0
        self.chars = 0
        self.synced_length = 0
        self.lat = array("q")
        self.lat_y = array("q")
        self.ack_rtt = array("q")  # (y-websocket has no acknowledgement)
        self.errors: Counter = Counter()
        self.updates_in = 0
        self.bytes_out = 0

    async def open(self, port: int, timeout: float = 60.0) -> YAuthor:
        await open_synced(self, port, timeout)
        return self

    def on_message(self, payload: bytes, now: int) -> None:
        if payload.startswith(_UPDATE_PREFIX):  # another client's update: the hot path
            self.updates_in += 1
            for m in TOKEN.finditer(payload, 2):
                (self.lat_y if int(m.group(1)) & 1 else self.lat).append(now - int(m.group(3)))
            return
        try:
            kind = payload[0]
            if kind == 0:
                subtype = payload[1]
                if subtype == 0:  # the server's state vector: send what it may lack
                    self.ws.send_binary(self.wire.sync(
                        SYNC_STEP2, update_of(self.client, 0, self.structs)))
                elif subtype == 1 and not self.synced.done():
                    update = self._read_bytes(payload, 2)
                    self.origin, self.right, self.synced_length = place(update, self.client,
                                                                        self.rng)
                    self.synced.set_result(now)
            elif kind == 2:  # y-protocols auth: permission denied
                self.errors["permission_denied"] += 1
            # 1 awareness: nobody's presence matters here
        except Exception as error:  # noqa: BLE001 - reported, and the socket closed
            self.error = f"{type(error).__name__}: {error}"
            self.errors["client"] += 1
            self.ws.abort()

    @staticmethod
    def _read_bytes(payload: bytes, pos: int) -> bytes:
        from notes.collab.lib0 import Reader

        reader = Reader(payload, pos)
        return reader.bytes()

    def keystroke(self) -> None:
        token = f"[{self.aid}.{self.seq}.{time.time_ns()}]"
        self.seq += 1
        struct = string_struct(token, self.origin, self.right)
        self.structs.append(struct)
        frame = _UPDATE_PREFIX + write_bytes(update_of(self.client, self.clock, [struct]))
        size = utf16_length(token)
        self.origin = (self.client, self.clock + size - 1)
        self.clock += size
        self.chars += len(token)
        self.bytes_out += len(frame)
        self.ws.send_binary(frame)

    @property
    def idle(self) -> bool:
        return True  # nothing awaits an answer

    @property
    def tokens_in(self) -> int:
        return len(self.lat) + len(self.lat_y)
