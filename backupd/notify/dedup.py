"""Alert state in state.sqlite: which conditions are open (dedup) and recent sends (rate limit)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from backupd.state import State

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (key TEXT PRIMARY KEY, opened REAL NOT NULL);
CREATE TABLE IF NOT EXISTS alert_sends (time REAL NOT NULL);
"""
HOUR = 3600.0


class AlertState:
    def __init__(self, state_dir: Path):
        self.path = State(state_dir).path
        with closing(self._connect()) as db, db:
            db.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def transition(self, key: str, firing: bool, now: float) -> bool:
        """Store the condition; True when it changed (opened or cleared)."""
        with closing(self._connect()) as db, db:
            is_open = db.execute("SELECT 1 FROM alerts WHERE key=?", (key,)).fetchone() is not None
            if firing and not is_open:
                db.execute("INSERT INTO alerts(key, opened) VALUES (?,?)", (key, now))
                return True
            if not firing and is_open:
                db.execute("DELETE FROM alerts WHERE key=?", (key,))
                return True
        return False

    def open_keys(self) -> set[str]:
        with closing(self._connect()) as db:
            return {r[0] for r in db.execute("SELECT key FROM alerts")}

    def take_token(self, per_hour: int, now: float) -> bool:
        """True (and counted) when fewer than per_hour messages went out in the last hour."""
        with closing(self._connect()) as db, db:
            db.execute("DELETE FROM alert_sends WHERE time < ?", (now - HOUR,))
            (sent,) = db.execute("SELECT COUNT(*) FROM alert_sends").fetchone()
            if sent >= per_hour:
                return False
            db.execute("INSERT INTO alert_sends(time) VALUES (?)", (now,))
            return True
