"""The alert outbox: every message to every channel is a row in state.sqlite until that channel took it.

A row is written in the same transaction that opens or clears the condition (dedup.py), so a crash, a
dead SMTP server or a full rate limit can delay an alert but never lose it. A row is deleted only after
its channel accepted it: delivery is at least once. Per channel the rows go out in order (a resolution
never overtakes its alert); a failing channel backs off exponentially. state.sqlite is kept 0600.
"""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from backupd.state.runs import State

SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_outbox (
  id INTEGER PRIMARY KEY,
  channel TEXT NOT NULL,
  key TEXT NOT NULL,
  message TEXT NOT NULL,
  created REAL NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_try REAL NOT NULL,
  held INTEGER NOT NULL DEFAULT 0,
  last_error TEXT
);
CREATE INDEX IF NOT EXISTS alert_outbox_by_channel ON alert_outbox(channel, id);
CREATE TABLE IF NOT EXISTS alert_delivered (channel TEXT NOT NULL, time REAL NOT NULL);
"""
HOUR = 3600.0
BACKOFF_FIRST = 30.0     # seconds before the first retry of a failed delivery
BACKOFF_MAX = 1800.0     # retries never wait longer than this


@dataclass
class Row:
    id: int
    channel: str
    key: str
    message: dict
    created: float
    attempts: int
    next_try: float
    held: bool
    last_error: str | None


def backoff(attempts: int) -> float:
    """Seconds to wait after the attempts-th failure: 30 s, 60 s, 120 s, ... at most 30 min."""
    return min(BACKOFF_FIRST * 2 ** max(0, attempts - 1), BACKOFF_MAX)


class Outbox:
    """Queued messages per channel and what each channel accepted in the last hour (rate limit)."""

    def __init__(self, state_dir: Path):
        self.path = State(state_dir).path
        with closing(self.connect()) as db, db:
            db.executescript(SCHEMA)
        for suffix in ("", "-wal", "-shm"):  # alert texts and targets are for the operators only
            try:
                os.chmod(f"{self.path}{suffix}", 0o600)
            except FileNotFoundError:
                pass

    def connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        return db

    @staticmethod
    def enqueue(db: sqlite3.Connection, channels, key: str, message: dict, now: float) -> None:
        """Add one row per channel inside the caller's transaction."""
        body = json.dumps(message, sort_keys=True, default=str)
        db.executemany("INSERT INTO alert_outbox(channel, key, message, created, next_try) VALUES (?,?,?,?,?)",
                       [(name, key, body, now, now) for name in channels])

    def queue(self, channel: str) -> list[Row]:
        with closing(self.connect()) as db:
            rows = db.execute("SELECT * FROM alert_outbox WHERE channel=? ORDER BY id", (channel,)).fetchall()
        return [Row(**{**dict(r), "message": json.loads(r["message"]), "held": bool(r["held"])}) for r in rows]

    def channels(self) -> set[str]:
        with closing(self.connect()) as db:
            return {r[0] for r in db.execute("SELECT DISTINCT channel FROM alert_outbox")}

    def delivered(self, channel: str, ids: list[int], now: float) -> None:
        """The channel accepted these rows: delete them and count one message against its rate limit."""
        with closing(self.connect()) as db, db:
            db.executemany("DELETE FROM alert_outbox WHERE id=?", [(i,) for i in ids])
            db.execute("INSERT INTO alert_delivered(channel, time) VALUES (?,?)", (channel, now))

    def failed(self, channel: str, ids: list[int], error: str, now: float) -> float:
        """A delivery failed: the rows' attempts go up; the channel's whole queue waits the backoff."""
        with closing(self.connect()) as db, db:
            db.executemany("UPDATE alert_outbox SET attempts=attempts+1, last_error=? WHERE id=?",
                           [(error[:300], i) for i in ids])
            (attempts,) = db.execute("SELECT MAX(attempts) FROM alert_outbox WHERE id IN (%s)"
                                     % ",".join("?" * len(ids)), ids).fetchone()
            retry = now + backoff(attempts or 1)
            db.execute("UPDATE alert_outbox SET next_try=MAX(next_try, ?) WHERE channel=?", (retry, channel))
        return retry

    def hold(self, channel: str, ids: list[int], until: float) -> None:
        """Rate limited: these rows wait until a slot frees up and then go out as one summary."""
        with closing(self.connect()) as db, db:
            db.executemany("UPDATE alert_outbox SET held=1, next_try=?, last_error='rate limited' WHERE id=?",
                           [(until, i) for i in ids])

    def drop_channel(self, channel: str) -> int:
        """Rows of a channel that is no longer configured (nothing could deliver them)."""
        with closing(self.connect()) as db, db:
            return db.execute("DELETE FROM alert_outbox WHERE channel=?", (channel,)).rowcount

    def recent(self, channel: str, now: float) -> list[float]:
        """Times the channel accepted a message in the last hour, oldest first."""
        with closing(self.connect()) as db, db:
            db.execute("DELETE FROM alert_delivered WHERE time < ?", (now - HOUR,))
            return [r[0] for r in db.execute("SELECT time FROM alert_delivered WHERE channel=? ORDER BY time",
                                             (channel,))]

    def depth(self) -> tuple[int, float | None]:
        """(rows waiting, creation time of the oldest)."""
        with closing(self.connect()) as db:
            count, oldest = db.execute("SELECT COUNT(*), MIN(created) FROM alert_outbox").fetchone()
        return count, oldest
