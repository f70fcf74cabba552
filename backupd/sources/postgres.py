"""PostgreSQL: pg_dump argv and row counts read from the plain-format dump as it streams.

Counting rows inside the dump's COPY blocks gives facts that describe exactly what was
backed up, so a drill can compare a restored database with them.
"""

from __future__ import annotations

import re

from backupd.sources.stream import StreamFacts

_COPY = re.compile(rb"^COPY ([^ ]+) .*FROM stdin;$")


def dump_argv(database: str, host: str | None = None, port: int | None = None,
              user: str | None = None, binary: str = "pg_dump") -> list[str]:
    """pg_dump argv for a plain-format dump to stdout; never a password."""
    argv = [binary, "--format=plain", "--no-password", "--quote-all-identifiers"]
    if host:
        argv += ["--host", str(host)]
    if port:
        argv += ["--port", str(port)]
    if user:
        argv += ["--username", str(user)]
    return argv + ["--dbname", database]


class DumpFacts(StreamFacts):
    """StreamFacts plus per-table row counts from the COPY blocks of a plain dump."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, int] = {}
        self._table: str | None = None
        self._tail = b""

    def __call__(self, chunk: bytes) -> None:
        super().__call__(chunk)
        data = self._tail + chunk
        lines = data.split(b"\n")
        self._tail = lines.pop()
        for line in lines:
            self._line(line)

    def _line(self, line: bytes) -> None:
        if self._table is None:
            match = _COPY.match(line)
            if match:
                self._table = match.group(1).decode("utf-8", "replace").replace('"', "")
                self.rows[self._table] = 0
        elif line == b"\\.":
            self._table = None
        else:
            self.rows[self._table] += 1

    def facts(self) -> dict:
        return {**super().facts(), "rows": dict(sorted(self.rows.items()))}
