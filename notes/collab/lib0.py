"""lib0's binary encoding, as the Yjs protocols use it: varUint, varUint8Array, varString.

A strict reader: truncated input, an integer longer than 53 bits (what JavaScript numbers hold)
and invalid UTF-8 are ``DecodeError``, never an ``IndexError`` from deep inside.
"""

from __future__ import annotations

MAX_UINT_BYTES = 8  # 8 x 7 = 56 bits, enough for 2**53 - 1


class DecodeError(ValueError):
    pass


def write_uint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def write_bytes(data: bytes) -> bytes:
    return write_uint(len(data)) + data


def write_string(text: str) -> bytes:
    return write_bytes(text.encode("utf-8"))


class Reader:
    def __init__(self, data: bytes, pos: int = 0):
        self.data = data
        self.pos = pos

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise DecodeError("truncated: the data ends early")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def skip(self, size: int) -> None:
        if self.pos + size > len(self.data):
            raise DecodeError("truncated: a value runs past the end")
        self.pos += size

    def uint(self) -> int:
        value = shift = 0
        for _ in range(MAX_UINT_BYTES):
            if self.pos >= len(self.data):
                raise DecodeError("truncated: a number runs past the end")
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                if value > 2**53 - 1:
                    raise DecodeError("a number is larger than 2**53 - 1")
                return value
            shift += 7
        raise DecodeError("a number is longer than 8 bytes")

    def bytes(self) -> bytes:
        size = self.uint()
        end = self.pos + size
        if end > len(self.data):
            left = len(self.data) - self.pos
            raise DecodeError(f"truncated: {size} bytes announced, {left} left")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def string(self) -> str:
        try:
            return self.bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError("a string is not valid UTF-8") from None

    def at_end(self) -> bool:
        return self.pos == len(self.data)

    def end(self) -> None:
        if not self.at_end():
            raise DecodeError(f"{len(self.data) - self.pos} unexpected bytes after the message")
