"""Sanic's own floor: one route returning a constant JSON, single process, no database.

``python bench/floor_app.py PORT`` (or ``python -m bench.floor_app PORT``). Configured like the
notes server (no access log, no motd, single process) so that the REST numbers of notes can be
read against it.
"""

from __future__ import annotations

import sys

from sanic import Sanic
from sanic.response import json

app = Sanic("floor")
app.config.ACCESS_LOG = False

BODY = {"id": "00000000-0000-0000-0000-000000000000", "title": "floor", "content": "constant"}


@app.get("/health")
async def health(request):
    return json({"status": "ok"})


@app.get("/floor")
async def floor(request):
    return json(BODY)


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]), single_process=True, access_log=False,
            motd=False)
