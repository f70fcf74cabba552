"""SQLite (WAL) index over the ledger: find records by kind, time and target without a full scan.

The index is derived data: if it is lost or behind, `catch_up` rebuilds the missing rows from the
ledger. It also remembers which records were mirrored to WORM storage.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
  seq INTEGER PRIMARY KEY,
  time TEXT NOT NULL,
  kind TEXT NOT NULL,
  target TEXT,
  offset INTEGER NOT NULL,
  length INTEGER NOT NULL,
  mirrored INTEGER NOT NULL DEFAULT 0,
  sha256 TEXT
);
CREATE INDEX IF NOT EXISTS records_by_kind ON records(kind, time);
CREATE INDEX IF NOT EXISTS records_by_target ON records(target, time);
"""


class Index:
    """The index file next to the ledger."""

    def __init__(self, path: Path):
        self.path = path
        self._db = sqlite3.connect(self.path, timeout=30)  # one connection per instance: closes are costly
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # derived data: the ledger itself is fsynced
        self._db.executescript(SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(records)")}
        if "sha256" not in columns:  # an index written before line hashes were kept
            with self._db:
                self._db.execute("ALTER TABLE records ADD COLUMN sha256 TEXT")

    def close(self) -> None:
        self._db.close()

    def add(self, rec: dict, offset: int, length: int, digest: str | None = None) -> None:
        with self._db:
            self._insert(rec, offset, length, digest)

    def _insert(self, rec: dict, offset: int, length: int, digest: str | None) -> None:
        # INSERT OR IGNORE: an indexed seq is never overwritten, so a rolled-back ledger cannot
        # erase what the index remembers (the head check compares the two).
        data = rec.get("data") if isinstance(rec.get("data"), dict) else {}
        target = data.get("target") if isinstance(data.get("target"), str) else None
        self._db.execute("INSERT OR IGNORE INTO records(seq, time, kind, target, offset, length, sha256)"
                         " VALUES (?,?,?,?,?,?,?)", (rec["seq"], rec["time"], rec["kind"], target, offset, length,
                                                     digest))

    def last_seq(self) -> int:
        return self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM records").fetchone()[0]

    def last_mirrored(self) -> int:
        """Highest seq confirmed in the WORM mirror (0 when none)."""
        return self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM records WHERE mirrored = 1").fetchone()[0]

    def row(self, seq: int) -> tuple[int, int, str | None] | None:
        """(offset, length, sha256) of an indexed record, or None."""
        return self._db.execute("SELECT offset, length, sha256 FROM records WHERE seq = ?", (seq,)).fetchone()

    def catch_up(self, ledger_path: Path, last_seq: int | None = None) -> None:
        """Index ledger records missing from the index (after a lost index or an old ledger)."""
        known = self.last_seq()
        if last_seq is not None and known >= last_seq:
            return
        try:
            data = ledger_path.read_bytes()
        except FileNotFoundError:
            return
        offset = 0
        with self._db:  # one transaction for the whole rebuild
            for line in data.split(b"\n"):
                length = len(line) + 1
                if line and offset + len(line) < len(data):
                    try:
                        rec = json.loads(line)
                        if rec["seq"] > known:
                            self._insert(rec, offset, length, hashlib.sha256(line).hexdigest())
                    except (ValueError, KeyError, TypeError):
                        pass  # a damaged line stays out of the index; verify reports it
                offset += length

    def find(self, kind=None, since=None, until=None, target=None) -> list[tuple[int, int]]:
        """(offset, length) of matching records, in seq order."""
        sql, args = "SELECT offset, length FROM records WHERE 1=1", []
        for clause, value in (("kind = ?", kind), ("time >= ?", since), ("time <= ?", until),
                              ("target = ?", target)):
            if value is not None:
                sql += f" AND {clause}"
                args.append(value)
        return self._db.execute(sql + " ORDER BY seq", args).fetchall()

    def unmirrored(self) -> list[tuple[int, int, int]]:
        """(seq, offset, length) of records not yet in the WORM mirror."""
        return self._db.execute("SELECT seq, offset, length FROM records WHERE mirrored = 0 ORDER BY seq").fetchall()

    def unmirrored_span(self) -> tuple[int, str | None, str | None]:
        """(records not yet in the WORM mirror, time of the oldest of them, time of the first record)."""
        count = self._db.execute("SELECT COUNT(*) FROM records WHERE mirrored = 0").fetchone()[0]
        oldest = self._db.execute("SELECT time FROM records WHERE mirrored = 0 ORDER BY seq LIMIT 1").fetchone()
        first = self._db.execute("SELECT time FROM records ORDER BY seq LIMIT 1").fetchone()
        return count, oldest[0] if oldest else None, first[0] if first else None

    def mark_mirrored(self, seq: int) -> None:
        with self._db as db:
            db.execute("UPDATE records SET mirrored = 1 WHERE seq = ?", (seq,))
