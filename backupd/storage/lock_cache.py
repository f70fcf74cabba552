"""What `extend-locks` already set: retain-until per object version, kept by the maintainer.

COMPLIANCE locks can only be lengthened, so a remembered retain-until is a lower bound of the real one:
a version remembered locked far enough needs no HEAD on the next run. Without it every run would read
the lock of every evidence version ever written, a cost that grows with the ledger.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path


class LockCache:
    """sqlite file of (bucket, key, version) -> retain-until (ISO 8601 UTC)."""

    def __init__(self, path: Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.db = sqlite3.connect(str(path))
        self.db.execute("CREATE TABLE IF NOT EXISTS locks (bucket TEXT, key TEXT, version TEXT, until TEXT, "
                        "PRIMARY KEY (bucket, key, version))")

    def __enter__(self) -> "LockCache":
        return self

    def __exit__(self, *exc) -> None:
        self.db.commit()
        self.db.close()

    def get(self, bucket: str, key: str, version: str) -> datetime | None:
        row = self.db.execute("SELECT until FROM locks WHERE bucket=? AND key=? AND version=?",
                              (bucket, key, version)).fetchone()
        return datetime.fromisoformat(row[0]) if row else None

    def put(self, bucket: str, key: str, version: str, until: datetime) -> None:
        self.db.execute("INSERT OR REPLACE INTO locks VALUES (?, ?, ?, ?)", (bucket, key, version, until.isoformat()))
