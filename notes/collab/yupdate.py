"""Reading a Yjs update (encoding v1) far enough to check it before it is applied.

pycrdt applies updates but shows nothing of what they hold. The server needs three facts first:
which strings an update inserts (to refuse NUL and to bound the growth of the note), where its
items attach (their left and right origins) and which ranges it deletes: a JavaScript client counts
positions in UTF-16 units and can insert or delete between the two halves of a surrogate pair,
which Yrs cannot represent (it silently puts the text elsewhere and diverges from every Yjs client).

The format (yjs ``encoding.js``): ``varUint(clients)``, then per client ``varUint(structs)
varUint(client) varUint(clock)`` and its structs, then the delete set. A struct starts with an
info byte: the low 5 bits are the content kind (0 GC, 10 skip, else an item), bit 8 says a left
origin ID follows, bit 7 a right origin ID; with neither, the parent follows (a root name or an
ID) and, with bit 6, a map key. Clocks count UTF-16 units of strings, one per other content.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from notes.collab.lib0 import DecodeError, Reader

ID = tuple[int, int]  # (client, clock)

_ORIGIN, _RIGHT_ORIGIN, _PARENT_SUB = 0x80, 0x40, 0x20
_GC, _DELETED, _JSON, _BINARY, _STRING, _EMBED, _FORMAT, _TYPE, _ANY, _DOC, _SKIP = (
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
_XML_ELEMENT, _XML_HOOK = 3, 5  # type refs followed by a name


@dataclass
class UpdateContents:
    strings: list[tuple[ID, str]] = field(default_factory=list)  # inserted text, by first ID
    origins: list[ID] = field(default_factory=list)  # items attach right after these
    right_origins: list[ID] = field(default_factory=list)  # ... and right before these
    deletes: list[tuple[int, int, int]] = field(default_factory=list)  # (client, clock, length)
    clocks: dict[int, int] = field(default_factory=dict)  # client -> the clock after its structs


def read_update(update: bytes) -> UpdateContents:
    """Raises ``DecodeError`` for anything that is not a whole v1 update."""
    reader = Reader(update)
    contents = UpdateContents()
    for _ in range(reader.uint()):
        count, client, clock = reader.uint(), reader.uint(), reader.uint()
        for _ in range(count):
            clock += _read_struct(reader, client, clock, contents)
        contents.clocks[client] = clock
    for _ in range(reader.uint()):
        client = reader.uint()
        for _ in range(reader.uint()):
            clock, length = reader.uint(), reader.uint()
            contents.deletes.append((client, clock, length))
    reader.end()
    return contents


def decode_state_vector(state_vector: bytes) -> dict[int, int]:
    """A state vector (``varUint(clients)``, then ``varUint(client) varUint(clock)`` each):
    client -> the clock after its items."""
    reader = Reader(state_vector)
    clocks = {}
    for _ in range(reader.uint()):
        client = reader.uint()
        clocks[client] = reader.uint()
    reader.end()
    return clocks


def utf16_length(text: str) -> int:
    return len(text) + sum(1 for char in text if char > "\uffff")


def _read_struct(reader: Reader, client: int, clock: int, contents: UpdateContents) -> int:
    """Read one struct; its length in clock units."""
    info = reader.byte()
    kind = info & 0x1F
    if kind in (_GC, _SKIP):
        return reader.uint()
    if info & _ORIGIN:
        contents.origins.append((reader.uint(), reader.uint()))
    if info & _RIGHT_ORIGIN:
        contents.right_origins.append((reader.uint(), reader.uint()))
    if not info & (_ORIGIN | _RIGHT_ORIGIN):
        if reader.uint() == 1:
            reader.string()  # a root type's name
        else:
            reader.uint(), reader.uint()  # a nested type's ID
        if info & _PARENT_SUB:
            reader.string()
    return _read_content(reader, kind, (client, clock), contents)


def _read_content(reader: Reader, kind: int, item: ID, contents: UpdateContents) -> int:
    if kind == _STRING:
        text = reader.string()
        contents.strings.append((item, text))
        return utf16_length(text)
    if kind == _DELETED:
        return reader.uint()
    if kind == _JSON:
        count = reader.uint()
        for _ in range(count):
            reader.string()
        return count
    if kind == _BINARY:
        reader.bytes()
        return 1
    if kind == _EMBED:
        reader.string()
        return 1
    if kind == _FORMAT:
        reader.string(), reader.string()
        return 1
    if kind == _TYPE:
        if reader.uint() in (_XML_ELEMENT, _XML_HOOK):
            reader.string()
        return 1
    if kind == _ANY:
        count = reader.uint()
        for _ in range(count):
            _skip_any(reader)
        return count
    if kind == _DOC:
        reader.string()
        _skip_any(reader)
        return 1
    raise DecodeError(f"unknown item content {kind}")


_MAX_ANY_DEPTH = 64


def _skip_any(reader: Reader, depth: int = 0) -> None:
    """Skip one lib0 ``any`` value (tags 127 down to 116)."""
    if depth > _MAX_ANY_DEPTH:
        raise DecodeError("a value is nested too deeply")
    tag = reader.byte()
    if tag in (127, 126, 121, 120):  # undefined, null, false, true
        return
    if tag == 125:  # varInt: continuation in bit 8 of every byte
        while reader.byte() & 0x80:
            pass
    elif tag in (124, 123, 122):  # float32, float64, bigint64
        reader.skip(struct.calcsize({124: ">f", 123: ">d", 122: ">q"}[tag]))
    elif tag == 119:
        reader.string()
    elif tag == 118:  # object: key, value pairs
        for _ in range(reader.uint()):
            reader.string()
            _skip_any(reader, depth + 1)
    elif tag == 117:
        for _ in range(reader.uint()):
            _skip_any(reader, depth + 1)
    elif tag == 116:
        reader.bytes()
    else:
        raise DecodeError(f"unknown value tag {tag}")


class SurrogatePairs:
    """Where the document's characters outside the BMP sit, as the IDs of their second halves.

    Yjs clocks count UTF-16 units, so an emoji in a string item takes two clocks; an update whose
    item attaches at, or whose deletion starts or ends at, the second one splits the character.
    Entries are never removed (a deleted emoji still has its IDs), which errs on refusing.
    """

    def __init__(self) -> None:
        self._second_halves: dict[int, set[int]] = {}

    def add(self, contents: UpdateContents) -> None:
        for (client, clock), text in contents.strings:
            if text.isascii():
                continue
            unit = clock
            halves = None
            for char in text:
                if char > "\uffff":
                    if halves is None:
                        halves = self._second_halves.setdefault(client, set())
                    halves.add(unit + 1)
                    unit += 2
                else:
                    unit += 1

    def split_by(self, contents: UpdateContents) -> bool:
        """Does the update insert or delete between the two halves of a character?"""
        if not self._second_halves:
            return False
        halves = self._second_halves
        return (
            any(clock + 1 in halves.get(client, ()) for client, clock in contents.origins)
            or any(clock in halves.get(client, ()) for client, clock in contents.right_origins)
            or any(clock in halves.get(client, ()) or clock + length in halves.get(client, ())
                   for client, clock, length in contents.deletes)
        )
