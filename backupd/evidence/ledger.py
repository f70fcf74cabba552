"""The evidence ledger (minimal form: append-only JSON lines under state_dir/evidence)."""

from __future__ import annotations

import json
import time

from backupd.config import Config


def record(cfg: Config, kind: str, data: dict) -> dict:
    """Append one event record; returns it."""
    rec = {"time": time.time(), "host": cfg.host, "kind": kind, "data": data}
    path = cfg.state_dir / "evidence" / "events.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(rec, sort_keys=True, default=str) + "\n")
    return rec
