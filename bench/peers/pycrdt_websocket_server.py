"""pycrdt-websocket's ``WebsocketServer`` for the yjs_fanout benchmark, under its ``ASGIServer``
app with uvicorn, as pycrdt-websocket's documentation shows it: the server's defaults (rooms
ready, rooms deleted when their last client leaves, no YStore, so nothing is persisted) and
uvicorn's (websockets' sans-I/O protocol, pings every 20 s, permessage-deflate only if a client
offers it), listening on 127.0.0.1 and the port given as the first argument. The event loop is
uvloop, as ``uvicorn.run`` would pick it and as the notes server runs (the documentation's
``asyncio.run`` would give the slower default loop). The room is the URL path.
``log_level="warning"`` only keeps uvicorn from logging every connection (the notes server runs
with its access log off).

    python bench/peers/pycrdt_websocket_server.py PORT      (prints "ready PORT" once listening)

Needs ``pip install pycrdt-websocket uvicorn`` (not dependencies of notes; see
docs/benchmarks.md for the versions measured).
"""

from __future__ import annotations

import asyncio
import sys

import uvicorn
from pycrdt.websocket import ASGIServer, WebsocketServer


async def main(port: int) -> None:
    websocket_server = WebsocketServer()
    app = ASGIServer(websocket_server)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    async with websocket_server:
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                task.result()  # raises what stopped uvicorn from starting
                return
            await asyncio.sleep(0.01)
        print(f"ready {port}", flush=True)
        await task  # uvicorn stops on SIGINT/SIGTERM (its own handlers)


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 1234
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(port))
    else:
        uvloop.run(main(port))
