"""A real PostgreSQL started from the ``pgserver`` wheel: the zero-configuration default.

Falls back to ``initdb``/``pg_ctl`` found on the PATH where the wheel is not available.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class EmbeddedDatabaseError(RuntimeError):
    pass


@dataclass
class EmbeddedPostgres:
    """An embedded cluster living in ``data_dir``; ``url`` is a ``postgresql://`` URL to it."""

    data_dir: Path
    url: str = ""
    _server: Any = field(default=None, repr=False)
    _pg_ctl: str | None = field(default=None, repr=False)

    def start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        pgdata = self.data_dir.resolve() / "pg"
        pgdata.mkdir(exist_ok=True)
        try:
            import pgserver
        except ImportError:
            self.url = self._start_from_path(pgdata)
        else:
            self._server = pgserver.get_server(pgdata, cleanup_mode="stop")
            self.url = self._server.get_uri()
        log.info("embedded PostgreSQL at %s", pgdata)
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
        elif self._pg_ctl is not None:
            pgdata = self.data_dir.resolve() / "pg"
            subprocess.run([self._pg_ctl, "-D", str(pgdata), "-m", "fast", "-w", "stop"],
                           check=False, capture_output=True)
            self._pg_ctl = None

    def delete(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir.resolve() / "pg", ignore_errors=True)

    def _start_from_path(self, pgdata: Path) -> str:
        initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
        if not (initdb and pg_ctl):
            raise EmbeddedDatabaseError(
                "no embedded PostgreSQL: the pgserver wheel is not installed for this Python and "
                "initdb/pg_ctl are not on the PATH. Set NOTES_DATABASE_URL to a postgresql:// URL."
            )
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            raise EmbeddedDatabaseError(
                "PostgreSQL refuses to run as root and the pgserver wheel is not installed. "
                "Install pgserver (Python 3.10-3.12) or set NOTES_DATABASE_URL."
            )
        if not (pgdata / "PG_VERSION").exists():
            subprocess.run([initdb, "-D", str(pgdata), "-U", "postgres", "--auth=trust",
                            "--encoding=utf8"], check=True, capture_output=True)
        status = subprocess.run([pg_ctl, "-D", str(pgdata), "status"], capture_output=True)
        if status.returncode != 0:
            subprocess.run([pg_ctl, "-D", str(pgdata), "-w", "-l", str(pgdata / "log"),
                            "-o", f"-h '' -k {pgdata}", "start"], check=True, capture_output=True)
        self._pg_ctl = pg_ctl
        return f"postgresql://postgres@/postgres?host={pgdata}"
