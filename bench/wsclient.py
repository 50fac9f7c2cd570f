"""A minimal websocket client for load generation, on a plain asyncio Protocol.

Why not ``websockets``: on 2 cores the load generators share the CPU with the server, so every
microsecond a client spends per frame is taken from the server under test. This client parses
frames in one pass over a bytearray, calls ``on_message(payload, recv_ns)`` synchronously, answers
pings, and never negotiates an extension: **no permessage-deflate** (the handshake offers none;
``extensions_offered`` stays empty and the server's answer is checked in ``extensions``).

Client frames are masked with the all-zero key (valid per RFC 6455, and free: the payload is sent
as is).
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time
from collections.abc import Callable

_ZERO_MASK = b"\x00\x00\x00\x00"


class HandshakeError(ConnectionError):
    pass


class WsClient(asyncio.Protocol):
    def __init__(self, host: str, port: int, path: str,
                 on_message: Callable[[bytes, int], None] | None = None):
        self.host, self.port, self.path = host, port, path
        self.on_message = on_message
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future = loop.create_future()
        self.first: asyncio.Future = loop.create_future()  # the first text frame (hello)
        self.closed: asyncio.Future = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.close_code: int | None = None
        self.extensions = ""
        self._buf = bytearray()
        self._open = False
        self._frag: list[bytes] | None = None
        self.frames = 0
        self.bytes_in = 0

    # --- opening -----------------------------------------------------------------------------

    @classmethod
    async def connect(cls, port: int, path: str, on_message=None, host: str = "127.0.0.1",
                      timeout: float = 60.0) -> WsClient:
        loop = asyncio.get_running_loop()
        _, proto = await asyncio.wait_for(
            loop.create_connection(lambda: cls(host, port, path, on_message), host, port),
            timeout)
        await asyncio.wait_for(asyncio.shield(proto.opened), timeout)
        return proto

    def connection_made(self, transport) -> None:
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
             f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
             f"Sec-WebSocket-Version: 13\r\n\r\n").encode()
        )

    def connection_lost(self, exc) -> None:
        if not self.opened.done():
            self.opened.set_exception(HandshakeError(f"connection lost during handshake: {exc}"))
        if not self.first.done():
            self.first.set_exception(ConnectionError(f"closed before the first message "
                                                     f"({self.close_code})"))
            self.first.exception()
        if not self.closed.done():
            self.closed.set_result(self.close_code)

    # --- reading -----------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        self.bytes_in += len(data)
        if not self._open:
            self._buf += data
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buf[:end]).decode("latin-1")
            data = bytes(self._buf[end + 4:])
            self._buf.clear()
            status = head.split("\r\n", 1)[0]
            if " 101 " not in status + " ":
                self.opened.set_exception(HandshakeError(status))
                self.transport.close()
                return
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "sec-websocket-extensions":
                    self.extensions = value.strip()
            self._open = True
            self.opened.set_result(True)
        elif self._buf:
            self._buf += data
            data = bytes(self._buf)
            self._buf.clear()
        # One pass over immutable bytes; an unfinished frame's bytes wait in _buf.
        n = len(data)
        pos = 0
        on_message = self.on_message if self.first.done() else None
        while n - pos >= 2:
            b0 = data[pos]
            length = data[pos + 1]
            if length < 126:
                start = pos + 2
            elif length == 126:
                if n - pos < 4:
                    break
                length = (data[pos + 2] << 8) | data[pos + 3]
                start = pos + 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(data[pos + 2:pos + 10], "big")
                start = pos + 10
            else:  # masked: a server never masks its frames (RFC 6455 5.1)
                self.transport.abort()
                return
            end = start + length
            if end > n:
                break
            pos = end
            if b0 == 0x81 and on_message is not None:  # a whole text frame: the hot path
                self.frames += 1
                on_message(data[start:end], now)
            else:
                self._frame(b0, data[start:end], now)
                on_message = self.on_message if self.first.done() else None
        if pos < n:
            self._buf += data[pos:]

    def _frame(self, b0: int, payload: bytes, now: int) -> None:
        opcode = b0 & 15
        fin = b0 & 128
        if opcode in (1, 2):
            if fin:
                self._deliver(payload, now)
            else:
                self._frag = [payload]
        elif opcode == 0:
            if self._frag is not None:
                self._frag.append(payload)
                if fin:
                    whole, self._frag = b"".join(self._frag), None
                    self._deliver(whole, now)
        elif opcode == 9:  # ping
            self._send_frame(0x8A, payload)
        elif opcode == 8:  # close
            self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            self._send_frame(0x88, payload[:2])
            self.transport.close()

    def _deliver(self, payload: bytes, now: int) -> None:
        self.frames += 1
        if not self.first.done():
            self.first.set_result((payload, now))
        if self.on_message is not None:
            self.on_message(payload, now)

    # --- writing -----------------------------------------------------------------------------

    def _send_frame(self, b0: int, payload: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        n = len(payload)
        if n < 126:
            head = bytes((b0, 0x80 | n))
        elif n < 65536:
            head = struct.pack("!BBH", b0, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", b0, 0x80 | 127, n)
        self.transport.write(head + _ZERO_MASK + payload)

    def send(self, text: str | bytes) -> None:
        self._send_frame(0x81, text.encode() if isinstance(text, str) else text)

    @property
    def is_open(self) -> bool:
        return self._open and not self.closed.done()

    async def close(self, timeout: float = 5.0) -> None:
        if self.transport is None or self.closed.done():
            return
        self._send_frame(0x88, struct.pack("!H", 1000))
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        except asyncio.TimeoutError:
            self.transport.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
